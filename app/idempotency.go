package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"onebox/store"
)

// An upload's Idempotency-Key (the IETF httpapi Idempotency-Key draft):
//
//   - The key is per user and lives for Options.IdempotencyTTL from the
//     upload that took it; then the same key uploads anew.
//   - What identifies the request is the SHA-256 of the file's bytes:
//     they alone make the photo (its type is sniffed from them). The
//     declared Content-Type, the multipart framing (curl draws a new
//     boundary each run) and the file name do not, so a retry that
//     re-encodes them is the same request.
//   - A retry of a finished upload is answered with the first 202 once
//     its body is read and hashed and found the same, without a second
//     create and even while the queue is full; with another file it is a
//     422. A retry while the first is in flight is a 409.
//
// "In flight" is from the moment this process has authenticated the
// request and checked its key until the upload's answer is decided (its
// photo committed, or refused): reading the body, storing the original
// and committing the photo with its job. The reservation table below
// covers one process. Across instances the store's unique (owner, key)
// is what holds: two instances may both read a body, but only one photo
// is created; the other request is answered by CreatePhoto like a retry
// (the first 202, or 422 for another file) rather than with a 409.

// defaultIdempotencyTTL is Options.IdempotencyTTL when unset.
const defaultIdempotencyTTL = 24 * time.Hour

// errKeyInFlight answers a request whose key an upload in this process
// holds.
var errKeyInFlight = func() *Problem {
	p := problem(http.StatusConflict, "idempotency-key-in-flight",
		"an upload with this Idempotency-Key is still in progress; send the request again once it has finished")
	p.retryAfter = time.Second
	return p
}()

// errKeyMismatch answers a key reused with another file.
var errKeyMismatch = func() *Problem {
	p := problem(http.StatusUnprocessableEntity, "idempotency-key-reused",
		"this Idempotency-Key was used for a different file; a new upload needs a new key")
	p.Errors = []FieldError{{Header: "Idempotency-Key", Detail: "was used for a different file"}}
	return p
}()

// errKeyGone answers a retry whose key was forgotten while its body was
// read (its photo deleted, or the key expired): the body is spent.
var errKeyGone = func() *Problem {
	p := problem(http.StatusConflict, "idempotency-key-gone",
		"the upload this Idempotency-Key named was deleted or expired while the request was read; send it again")
	p.retryAfter = time.Second
	return p
}()

// inflight reserves (user, key) pairs for the uploads this process runs.
// Its size is bounded by the uploads in progress.
type inflight struct {
	mu   sync.Mutex
	keys map[inflightKey]struct{}
}

type inflightKey struct{ userID, key string }

func newInflight() *inflight { return &inflight{keys: make(map[inflightKey]struct{})} }

// reserve takes key for userID until release is called; ok is false if
// another request holds it.
func (f *inflight) reserve(userID, key string) (release func(), ok bool) {
	k := inflightKey{userID, key}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, held := f.keys[k]; held {
		return nil, false
	}
	f.keys[k] = struct{}{}
	return func() {
		f.mu.Lock()
		delete(f.keys, k)
		f.mu.Unlock()
	}, true
}

// uploadDigest is what CreatePhoto stores with a key: "sha256:" and the
// hex digest of the file.
func uploadDigest(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// keyTaken reports whether userID holds key now: a retry, which is read
// and compared rather than uploaded.
func (a *App) keyTaken(c echo.Context, userID, key string) (bool, error) {
	_, err := a.store.PhotoByIdempotencyKey(c.Request().Context(), store.IdempotencyParams{OwnerID: userID, Key: key, Now: a.now().UTC()})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, err
}

// replayUpload answers the retry of an upload with key: it reads and
// hashes the file in body, then answers the first upload's 202 if the
// file is the same, else 422. Nothing is stored or created.
func (a *App) replayUpload(ctx context.Context, c echo.Context, userID, key string, body io.Reader) error {
	h := sha256.New()
	if _, err := io.Copy(h, body); err != nil {
		if tooLarge(err) {
			return tooLargeProblem(a.opts.MaxUploadBytes)
		}
		return bodyCutShort() // nothing but the body is read here
	}
	ph, err := a.store.PhotoByIdempotencyKey(ctx, store.IdempotencyParams{
		OwnerID: userID, Key: key, Digest: uploadDigest(h), Now: a.now().UTC(),
	})
	if errors.Is(err, store.ErrNotFound) {
		return errKeyGone
	}
	if err != nil {
		return err
	}
	return accepted(c, ph)
}
