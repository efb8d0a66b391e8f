// Package redistest is what the tests of onebox's Redis backends share:
// the Redis at ONEBOX_TEST_REDIS_URL (unset: the test skips; set but not
// answering: it fails) and a key prefix of each test's own.
package redistest

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// URL returns ONEBOX_TEST_REDIS_URL, skipping the test without it; what
// names the tests in the skip message ("cache", "rate limiter").
func URL(tb testing.TB, what string) string {
	tb.Helper()
	rawURL := os.Getenv("ONEBOX_TEST_REDIS_URL")
	if rawURL == "" {
		tb.Skipf("ONEBOX_TEST_REDIS_URL not set: skipping the Redis %s tests", what)
	}
	return rawURL
}

// Client connects to ONEBOX_TEST_REDIS_URL, failing the test when Redis
// does not answer, and closes the client when the test ends.
func Client(tb testing.TB, what string) *goredis.Client {
	tb.Helper()
	opt, err := goredis.ParseURL(URL(tb, what))
	if err != nil {
		tb.Fatalf("ONEBOX_TEST_REDIS_URL: %v", err)
	}
	client := goredis.NewClient(opt)
	tb.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(tb.Context(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		tb.Fatalf("ONEBOX_TEST_REDIS_URL: ping %s: %v", opt.Addr, err)
	}
	return client
}

// Prefix returns a key prefix of the test's own, so that parallel runs
// and leftovers of killed ones cannot interfere, and deletes its keys
// when the test ends.
func Prefix(tb testing.TB, client goredis.UniversalClient) string {
	tb.Helper()
	prefix := "onebox-test:" + rand.Text() + ":"
	tb.Cleanup(func() {
		// tb.Context is done by now.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		keys, err := Keys(ctx, client, prefix)
		if err != nil {
			tb.Error(err)
			return
		}
		if len(keys) > 0 {
			if err := client.Del(ctx, keys...).Err(); err != nil {
				tb.Errorf("delete %d keys under %s: %v", len(keys), prefix, err)
			}
		}
	})
	return prefix
}

// Keys returns the keys under prefix, which holds no glob characters.
func Keys(ctx context.Context, client goredis.UniversalClient, prefix string) ([]string, error) {
	var keys []string
	iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("scan %s*: %w", prefix, err)
	}
	return keys, nil
}
