// Package s3test gives tests an empty S3 bucket on each server they run
// on: gofakes3 in this process, and the moto_server at
// ONEBOX_TEST_S3_URL (.ci/run starts one).
package s3test

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// The credentials both servers are used with (neither checks them);
// .ci/run exports them as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
const (
	AccessKey = "onebox"
	SecretKey = "onebox-secret"
)

// Credentials are AccessKey and SecretKey, for an SDK client.
func Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, "")
}

// Server is an S3 server to run a test on.
type Server struct {
	Name string
	// Bucket returns the endpoint of a new, empty bucket; it skips t
	// when the server is not configured.
	Bucket func(t *testing.T) (endpoint, bucket string)
}

// Servers are gofakes3 and moto, in that order.
func Servers() []Server {
	return []Server{{"gofakes3", GoFakeS3}, {"moto", Moto}}
}

// GoFakeS3 starts gofakes3, in memory, with one empty bucket, stopped
// when t ends.
func GoFakeS3(t *testing.T) (endpoint, bucket string) {
	t.Helper()
	be := s3mem.New()
	const name = "onebox"
	if err := be.CreateBucket(name); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(be).Server())
	t.Cleanup(srv.Close)
	return srv.URL, name
}

// buckets numbers the moto buckets made by this process, so parallel
// tests each have their own.
var buckets atomic.Int64

// Moto creates a new bucket on the moto_server at ONEBOX_TEST_S3_URL,
// or skips t when it is not set.
func Moto(t *testing.T) (endpoint, bucket string) {
	t.Helper()
	endpoint = os.Getenv("ONEBOX_TEST_S3_URL")
	if endpoint == "" {
		t.Skip("ONEBOX_TEST_S3_URL is not set")
	}
	// The process id keeps apart the test binaries sharing one server.
	bucket = fmt.Sprintf("onebox-%d-%d", os.Getpid(), buckets.Add(1))
	client := s3.New(s3.Options{
		BaseEndpoint: aws.String(endpoint), UsePathStyle: true, Region: "us-east-1", Credentials: Credentials(),
	})
	if _, err := client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		var owned *types.BucketAlreadyOwnedByYou
		if !errors.As(err, &owned) {
			t.Fatalf("creating bucket %s at %s: %v", bucket, endpoint, err)
		}
	}
	return endpoint, bucket
}
