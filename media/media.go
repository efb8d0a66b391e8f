// Package media stores photo files behind the Storage interface: the
// local filesystem under the data dir by default (media/local), an
// S3-compatible bucket later.
package media

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned for a key that does not exist.
var ErrNotFound = errors.New("media: not found")

// ErrBadKey is returned for a key that is not a clean relative path (empty
// segments, "..", a leading slash, a backslash or a NUL byte).
var ErrBadKey = errors.New("media: bad key")

// Info describes a stored object.
type Info struct {
	Size        int64
	ModTime     time.Time
	ContentType string
	ETag        string // a strong validator of the bytes, quoted: equal bytes, equal ETag
}

// Object is an open stored file: readable, seekable (for byte ranges)
// and closable.
type Object interface {
	io.ReadSeekCloser
	Info() Info
}

// Storage holds objects by key. Keys are slash-separated relative paths;
// keys under "private/" are never served to clients.
type Storage interface {
	// Put stores r under key durably before returning (for the local
	// backend: temp file, fsync, rename, fsync of the directory), so an
	// acknowledged upload survives a crash. It replaces an existing key.
	Put(ctx context.Context, key string, r io.Reader, contentType string) (Info, error)
	// Open returns the object, or ErrNotFound.
	Open(ctx context.Context, key string) (Object, error)
	// Delete removes keys; missing keys are not an error.
	Delete(ctx context.Context, keys ...string) error
	// URL is where a client fetches key: a path on this service for the
	// local backend, a bucket or CDN address for S3.
	URL(key string) string
}
