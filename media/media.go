// Package media stores photo files behind the Storage interface: the
// local filesystem under the data dir by default (media/local), an
// S3-compatible bucket later.
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

// Object is an open stored file: readable, seekable (for byte ranges)
// and closable.
type Object interface {
	io.ReadSeekCloser
	Info() Info
}

// Storage holds objects by key. Keys follow the grammar of ValidKey:
// Put, Open and Delete refuse any other key with ErrBadKey before they
// touch storage (Delete refuses all its keys if one is bad), and URL is
// defined only for valid keys. Keys under PrivatePrefix are never served
// to clients.
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
