// Package s3 implements media.Storage on an S3-compatible bucket, with
// github.com/aws/aws-sdk-go-v2.
//
// An object is stored at the bucket's prefix followed by its key. Its
// ETag is the SHA-256 of its bytes, quoted, as media/local's is, kept in
// the object's metadata: the same bytes have the same ETag on every
// backend and after a copy between them, which S3's own ETag (an MD5, or
// not even that under some encryptions and for multipart uploads) does
// not promise.
//
// A Put spools the upload to a temp file while hashing it, then sends
// the file: the SDK must know a body's length and, over plain HTTP, hash
// it before sending, and an upload is a stream of unknown length. A
// reader that fails leaves nothing in the bucket, since nothing is sent.
//
// Reads are streams (GetObject) and byte ranges (GetObject with Range);
// nothing seeks. URLs: a public key's is stable, the public base URL
// followed by the key (a CDN, or the bucket's public address), or a path
// on this service, which serves it by ranges; a private key's is
// presigned and expires.
package s3

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"onebox/media"
)

var _ media.Storage = (*Storage)(nil)

const (
	// DefaultPublicURL is where this service serves public keys (GET
	// /media/*) when no public base URL is configured.
	DefaultPublicURL = "/media/"
	// DefaultPresignExpiry bounds a private key's URL.
	DefaultPresignExpiry = 15 * time.Minute

	defaultRegion      = "us-east-1"
	defaultContentType = "application/octet-stream"
	metaSHA256         = "sha256" // x-amz-meta-sha256
)

// Options configures a Storage beyond its URL.
type Options struct {
	// PublicURL is prepended to a public key's escaped segments by URL:
	// the address at which the bucket's prefix is served to clients (a
	// CDN, or the bucket's public address). "" is DefaultPublicURL.
	PublicURL string
	// PresignExpiry bounds a private key's URL; 0 is
	// DefaultPresignExpiry.
	PresignExpiry time.Duration
	// Credentials signs requests; nil is the SDK's default chain
	// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN,
	// then shared files and instance roles).
	Credentials aws.CredentialsProvider
	// HTTPClient sends the requests; nil is the SDK's.
	HTTPClient *http.Client
	// TempDir holds the spooled uploads; "" is os.TempDir.
	TempDir string
}

// Storage is a media.Storage on a bucket under a prefix.
type Storage struct {
	client  *s3.Client
	presign *s3.PresignClient
	bucket  string
	prefix  string // "" or ending in "/"
	opts    Options
}

// Open returns a Storage for u, s3://bucket/prefix?endpoint=…&region=…:
// endpoint is an S3-compatible server's base URL (path-style addressing,
// as such servers expect), absent for AWS itself; region defaults to
// us-east-1. It sends no request: a wrong bucket or credentials show at
// the first use.
func Open(ctx context.Context, u *url.URL, o Options) (*Storage, error) {
	if u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("media/s3: %q: want s3://bucket/prefix", u.Redacted())
	}
	q := u.Query()
	for k := range q {
		if k != "endpoint" && k != "region" {
			return nil, fmt.Errorf("media/s3: unknown parameter %q (want endpoint, region)", k)
		}
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		if !media.ValidKey(prefix) {
			return nil, fmt.Errorf("media/s3: prefix %q is not of the key grammar", prefix)
		}
		prefix += "/"
	}
	endpoint := q.Get("endpoint")
	if endpoint != "" {
		if e, err := url.Parse(endpoint); err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
			return nil, fmt.Errorf("media/s3: endpoint %q: want http(s)://host[:port]", endpoint)
		}
	}
	region := cmp.Or(q.Get("region"), defaultRegion)
	loads := []func(*config.LoadOptions) error{config.WithRegion(region)}
	if o.Credentials != nil {
		loads = append(loads, config.WithCredentialsProvider(o.Credentials))
	}
	if o.HTTPClient != nil {
		loads = append(loads, config.WithHTTPClient(o.HTTPClient))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		return nil, fmt.Errorf("media/s3: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if endpoint != "" {
			so.BaseEndpoint = aws.String(endpoint)
			so.UsePathStyle = true
		}
		// Checksums only where the API requires them: S3-compatible
		// servers do not all speak the trailing checksums that the SDK
		// sends by default, and the bytes are checked by our own SHA-256.
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	o.PublicURL = cmp.Or(o.PublicURL, DefaultPublicURL)
	if o.PresignExpiry <= 0 {
		o.PresignExpiry = DefaultPresignExpiry
	}
	return &Storage{client: client, presign: s3.NewPresignClient(client), bucket: u.Host, prefix: prefix, opts: o}, nil
}

// Put spools r to a temp file while hashing it, then puts the file: S3
// replaces the object in one step, so readers see the old version or the
// new one, whole.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader, contentType string) (_ media.Info, err error) {
	if err := checkKey(key); err != nil {
		return media.Info{}, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("media/s3: put %q: %w", key, err)
		}
	}()
	contentType = cmp.Or(contentType, defaultContentType)
	f, err := os.CreateTemp(s.opts.TempDir, "onebox-s3-*")
	if err != nil {
		return media.Info{}, err
	}
	defer func() { _ = f.Close(); _ = os.Remove(f.Name()) }()
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx: ctx, r: r})
	if err != nil {
		return media.Info{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return media.Info{}, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if _, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           aws.String(s.prefix + key),
		Body:          f,
		ContentLength: aws.Int64(size),
		ContentType:   &contentType,
		Metadata:      map[string]string{metaSHA256: sum},
	}); err != nil {
		return media.Info{}, translate(ctx, err)
	}
	// The answer to a PUT has no Last-Modified, and a HEAD might see a
	// later Put's version: ModTime is this clock's, the rest is exact.
	return media.Info{Size: size, ModTime: time.Now(), ContentType: contentType, ETag: etag(sum)}, nil
}

// Stat is a HEAD of the object.
func (s *Storage) Stat(ctx context.Context, key string) (media.Info, error) {
	if err := checkKey(key); err != nil {
		return media.Info{}, err
	}
	info, err := s.stat(ctx, key)
	if err != nil {
		return media.Info{}, fmt.Errorf("media/s3: stat %q: %w", key, err)
	}
	return info, nil
}

func (s *Storage) stat(ctx context.Context, key string) (media.Info, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)})
	if err != nil {
		return media.Info{}, translate(ctx, err)
	}
	return info(aws.ToInt64(out.ContentLength), out.LastModified, out.ContentType, out.Metadata, out.ETag), nil
}

// Open is a GET of the whole object.
func (s *Storage) Open(ctx context.Context, key string) (media.Object, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)})
	if err != nil {
		return nil, fmt.Errorf("media/s3: open %q: %w", key, translate(ctx, err))
	}
	return &object{ReadCloser: out.Body, info: info(aws.ToInt64(out.ContentLength), out.LastModified, out.ContentType, out.Metadata, out.ETag)}, nil
}

// OpenRange is a GET with a Range header; the whole object's size comes
// from Content-Range.
func (s *Storage) OpenRange(ctx context.Context, key string, offset, length int64) (media.Object, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if offset < 0 || length <= 0 {
		return nil, fmt.Errorf("media/s3: range %d+%d of %q: %w", offset, length, key, media.ErrRange)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: &s.bucket,
		Key:    aws.String(s.prefix + key),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1)),
	})
	if err != nil {
		return nil, fmt.Errorf("media/s3: open %q at %d: %w", key, offset, translate(ctx, err))
	}
	size, err := totalSize(aws.ToString(out.ContentRange))
	if err != nil {
		_ = out.Body.Close()
		return nil, fmt.Errorf("media/s3: open %q at %d: %w", key, offset, err)
	}
	return &object{ReadCloser: out.Body, info: info(size, out.LastModified, out.ContentType, out.Metadata, out.ETag)}, nil
}

// totalSize reads the complete length of "bytes first-last/complete".
func totalSize(contentRange string) (int64, error) {
	_, total, ok := strings.Cut(contentRange, "/")
	n, err := strconv.ParseInt(total, 10, 64)
	if !ok || err != nil || n < 0 {
		return 0, fmt.Errorf("bad Content-Range %q", contentRange)
	}
	return n, nil
}

// Delete removes keys one request each: a photo has a handful, and
// DeleteObjects would need a checksum that S3-compatible servers
// compute differently.
func (s *Storage) Delete(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		if err := checkKey(key); err != nil {
			return err
		}
	}
	for _, key := range keys {
		if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)}); err != nil {
			if err := translate(ctx, err); !errors.Is(err, media.ErrNotFound) {
				return fmt.Errorf("media/s3: delete %q: %w", key, err)
			}
		}
	}
	return nil
}

// FirstKey returns the first key under the prefix (the whole bucket
// for none), or ok false when there is none: a backup goes only where
// nothing is (backup.Objects).
func (s *Storage) FirstKey(ctx context.Context) (key string, ok bool, err error) {
	out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &s.prefix, MaxKeys: aws.Int32(1)})
	if err != nil {
		return "", false, fmt.Errorf("media/s3: list %s/%s: %w", s.bucket, s.prefix, translate(ctx, err))
	}
	if len(out.Contents) == 0 {
		return "", false, nil
	}
	return strings.TrimPrefix(aws.ToString(out.Contents[0].Key), s.prefix), true, nil
}

// Keys lists, sorted, the key of every object under the prefix with its
// last modification: what a reconcile compares with the keys a database
// references (backup.Lister). An object whose name under the prefix is
// not a key was not written by a Put, and is not listed: it is not ours
// to sweep.
func (s *Storage) Keys(ctx context.Context) ([]media.KeyInfo, error) {
	var out []media.KeyInfo
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &s.prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("media/s3: list %s/%s: %w", s.bucket, s.prefix, translate(ctx, err))
		}
		for _, o := range page.Contents {
			key := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if media.ValidKey(key) {
				out = append(out, media.KeyInfo{Key: key, ModTime: aws.ToTime(o.LastModified)})
			}
		}
	}
	// S3 lists in the order of the keys' UTF-8 bytes, as sort does; sort
	// anyway, for servers that do not.
	slices.SortFunc(out, func(a, b media.KeyInfo) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// URL is stable for a public key: PublicURL and the escaped key, no
// request, no expiry, so an answer that holds it stays true (the public
// profile's ETag is its version). A private key's is presigned and
// expires after PresignExpiry.
func (s *Storage) URL(ctx context.Context, key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	if media.Public(key) {
		segs := strings.Split(key, "/")
		for i, seg := range segs {
			segs[i] = url.PathEscape(seg)
		}
		return s.opts.PublicURL + strings.Join(segs, "/"), nil
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)},
		s3.WithPresignExpires(s.opts.PresignExpiry))
	if err != nil {
		return "", fmt.Errorf("media/s3: presign %q: %w", key, err)
	}
	return req.URL, nil
}

// info builds an Info from a response's headers. The ETag is ours, from
// the metadata; an object written by another tool has none, and gets
// S3's (still a validator of its bytes as long as they do not change).
func info(size int64, modTime *time.Time, contentType *string, meta map[string]string, s3ETag *string) media.Info {
	tag := aws.ToString(s3ETag)
	if sum := meta[metaSHA256]; sum != "" {
		tag = etag(sum)
	}
	return media.Info{Size: size, ModTime: aws.ToTime(modTime), ContentType: cmp.Or(aws.ToString(contentType), defaultContentType), ETag: tag}
}

func etag(sum string) string { return `"` + sum + `"` }

// translate maps a 404 to media.ErrNotFound, a 416 to media.ErrRange,
// and a request the context canceled to the context's error.
func translate(ctx context.Context, err error) error {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", media.ErrNotFound, err)
		case http.StatusRequestedRangeNotSatisfiable:
			return fmt.Errorf("%w: %w", media.ErrRange, err)
		}
	}
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

func checkKey(key string) error {
	if !media.ValidKey(key) {
		return fmt.Errorf("%w: %.80q", media.ErrBadKey, key)
	}
	return nil
}

type object struct {
	io.ReadCloser
	info media.Info
}

func (o *object) Info() media.Info { return o.info }

// ctxReader stops a spool whose context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
