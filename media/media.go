// Package media stores photo files behind the Storage interface: the
// local filesystem under the data dir by default (media/local), or an
// S3-compatible bucket (media/s3).
package media

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"
)

// ErrNotFound is returned for a key that does not exist.
var ErrNotFound = errors.New("media: not found")

// ErrBadKey is returned for a key that ValidKey refuses.
var ErrBadKey = errors.New("media: bad key")

// ErrRange is returned by OpenRange for a range that starts at or past
// the end of the object.
var ErrRange = errors.New("media: range not satisfiable")

// ErrNotServed is returned by URL for a key that the storage cannot give
// clients an address for (a private key on a storage that cannot presign).
var ErrNotServed = errors.New("media: no URL for this key")

// The bounds of a key. A segment of MaxKeySegmentLen bytes, plus the
// few bytes a backend may add to name its own files beside it, stays
// under the 255-byte file names of common filesystems; MaxKeyLen stays
// far under S3's 1024-byte keys.
const (
	MaxKeyLen        = 256
	MaxKeySegments   = 8
	MaxKeySegmentLen = 128
)

// PrivatePrefix starts the keys that are never served to clients.
const PrivatePrefix = "private/"

// ValidKey reports whether key follows the grammar of keys: at most
// MaxKeyLen bytes in 1 to MaxKeySegments segments separated by "/"; each
// segment 1 to MaxKeySegmentLen bytes of lowercase ASCII letters, digits,
// '.', '-' and '_', beginning with a letter or digit, not ending with
// '.', and without "..".
//
// The grammar is strict so that a key means the same file on every
// filesystem and in every bucket: with one case, no two spellings of a
// key (such as "PRIVATE/x" and "private/x") name one file on a
// case-insensitive filesystem; without a trailing dot, "private./x" is
// not "private/x" on Windows; without '~' and ':', neither 8.3 short
// names nor alternate data streams can be named; with no leading dot,
// neither "." and ".." nor a backend's hidden files are keys.
func ValidKey(key string) bool {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return false
	}
	segments := 0
	for seg := range strings.SplitSeq(key, "/") {
		segments++
		if segments > MaxKeySegments || !validSegment(seg) {
			return false
		}
	}
	return true
}

func validSegment(seg string) bool {
	if len(seg) == 0 || len(seg) > MaxKeySegmentLen || !lowerAlnum(seg[0]) ||
		seg[len(seg)-1] == '.' || strings.Contains(seg, "..") {
		return false
	}
	for i := 1; i < len(seg); i++ {
		if c := seg[i]; !lowerAlnum(c) && c != '.' && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func lowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// Public reports whether key may be served to clients: a valid key that
// is neither "private" nor under PrivatePrefix. Checking the validity
// first is what makes the prefix test exact: a valid key has one
// spelling.
func Public(key string) bool {
	return ValidKey(key) && !strings.HasPrefix(key+"/", PrivatePrefix)
}

// Info describes a stored object.
type Info struct {
	Size        int64
	ModTime     time.Time
	ContentType string
	ETag        string // a strong validator of the bytes, quoted: equal bytes, equal ETag
}

// KeyInfo is one stored object as a listing sees it: what a reconcile
// compares with the keys a database references, and how old it is.
type KeyInfo struct {
	Key     string
	ModTime time.Time
}

// Object is an open stored object: a stream of the bytes asked for (all
// of them, or a range) and the Info of the whole object. It does not
// seek: an object store reads by stream and by range, and a reader that
// needs other bytes opens another range.
type Object interface {
	io.ReadCloser
	Info() Info
}

// Storage holds objects by key. Keys follow the grammar of ValidKey:
// every method refuses any other key with ErrBadKey before it touches
// storage (Delete refuses all its keys if one is bad). Keys under
// PrivatePrefix are never served by this service's own routes.
type Storage interface {
	// Put stores r under key durably before returning (for the local
	// backend: temp file, fsync, rename, fsync of the directory), so an
	// acknowledged upload survives a crash. It replaces an existing key.
	// A Put whose reader fails stores nothing.
	Put(ctx context.Context, key string, r io.Reader, contentType string) (Info, error)
	// Stat returns the object's Info, or ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Open returns a stream of the whole object, or ErrNotFound.
	Open(ctx context.Context, key string) (Object, error)
	// OpenRange returns a stream of at most length bytes (length > 0)
	// from offset, fewer where the object ends first; Info is the whole
	// object's, so a caller that paired a Stat with ranges can tell by
	// the ETag whether they read one version. ErrNotFound for a missing
	// key, ErrRange for an offset at or past the end.
	OpenRange(ctx context.Context, key string, offset, length int64) (Object, error)
	// Delete removes keys; missing keys are not an error.
	Delete(ctx context.Context, keys ...string) error
	// URL is where a client fetches key: a path on this service or a
	// stable public address for a public key; for a private key, a
	// presigned address that expires, or ErrNotServed where the storage
	// cannot presign. It may fail (a signer without credentials).
	URL(ctx context.Context, key string) (string, error)
}
