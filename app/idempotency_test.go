package app_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onebox/media"
	"onebox/store"
)

// idemSpy records what the upload asks the store about idempotency
// keys, so each layer is tested on its own: the HTTP early path without
// the store's create, and the store's create without the early path.
type idemSpy struct {
	store.Store
	// blind makes the early look-up (the one without a digest) find
	// nothing, as if another instance committed the key just after it.
	blind    bool
	onLookup func(store.IdempotencyParams) // called before each look-up

	mu      sync.Mutex
	creates []store.CreatePhotoParams
}

func (s *idemSpy) CreatePhoto(ctx context.Context, p store.CreatePhotoParams) (store.Photo, bool, error) {
	s.mu.Lock()
	s.creates = append(s.creates, p)
	s.mu.Unlock()
	return s.Store.CreatePhoto(ctx, p)
}

func (s *idemSpy) PhotoByIdempotencyKey(ctx context.Context, p store.IdempotencyParams) (store.Photo, error) {
	if s.onLookup != nil {
		s.onLookup(p)
	}
	if s.blind && p.Digest == "" {
		return store.Photo{}, store.ErrNotFound
	}
	return s.Store.PhotoByIdempotencyKey(ctx, p)
}

// created returns the CreatePhoto calls so far.
func (s *idemSpy) created() []store.CreatePhotoParams {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.CreatePhotoParams(nil), s.creates...)
}

// spyOn wraps the bundle's store in spy.
func spyOn(spy *idemSpy) func(*setup) {
	return func(s *setup) {
		s.noWorkers = true
		s.wrapStore = func(st store.Store) store.Store {
			spy.Store = st
			return spy
		}
	}
}

func photoCount(t *testing.T, b *bundle, token string) int {
	t.Helper()
	list := b.do("GET", "/v1/users/me/photos", "", bearer(token)...)
	mustStatus(t, list, http.StatusOK)
	return len(list.json(t)["items"].([]any))
}

// TestIdempotencyRetryAnsweredEarly: a retry of a finished upload gets
// the first 202 from the HTTP layer alone, without a second CreatePhoto
// (which would also answer it). The same file counts as the same request
// however it is sent: multipart first, raw body on the retry.
func TestIdempotencyRetryAnsweredEarly(t *testing.T) {
	t.Parallel()
	spy := &idemSpy{}
	b := newBundle(t, spyOn(spy))
	_, token := b.signup("retrier")
	file := shadedPNG(t, 10)
	first := b.uploadBytes(token, file, true, "Idempotency-Key", "k-1")
	mustStatus(t, first, http.StatusAccepted)
	retry := b.uploadBytes(token, file, false, "Idempotency-Key", "k-1")
	mustStatus(t, retry, http.StatusAccepted)
	if retry.json(t)["id"] != first.json(t)["id"] || retry.Header.Get("Location") != first.Header.Get("Location") {
		t.Fatalf("retry %s, first %s: want the first photo", retry.body, first.body)
	}
	if n := len(spy.created()); n != 1 {
		t.Fatalf("CreatePhoto called %d times, want 1: the retry must be answered before a create", n)
	}
	// The key is stored with the file's digest and the default expiry.
	c := spy.created()[0].Idempotency
	if !strings.HasPrefix(c.Digest, "sha256:") || len(c.Digest) != len("sha256:")+64 {
		t.Errorf("stored digest %q, want sha256: and 64 hex digits", c.Digest)
	}
	if d := c.ExpiresAt.Sub(spy.created()[0].Photo.CreatedAt); d != 24*time.Hour {
		t.Errorf("key expires %v after the upload, want the default 24h", d)
	}
	if n := photoCount(t, b, token); n != 1 {
		t.Fatalf("%d photos, want 1", n)
	}
}

// TestIdempotencyKeyReusedWithAnotherFile: a key reused with another file
// is a 422 problem, answered from the digest of the body it read, without
// a create; the key keeps answering its own file.
func TestIdempotencyKeyReusedWithAnotherFile(t *testing.T) {
	t.Parallel()
	spy := &idemSpy{}
	b := newBundle(t, spyOn(spy))
	_, token := b.signup("reuser")
	first := b.uploadBytes(token, shadedPNG(t, 10), false, "Idempotency-Key", "k-1")
	mustStatus(t, first, http.StatusAccepted)

	for _, multipartForm := range []bool{false, true} {
		r := b.uploadBytes(token, shadedPNG(t, 200), multipartForm, "Idempotency-Key", "k-1")
		m := mustProblem(t, r, http.StatusUnprocessableEntity, "/problems/idempotency-key-reused")
		errs, _ := m["errors"].([]any)
		if len(errs) != 1 || errs[0].(map[string]any)["header"] != "Idempotency-Key" {
			t.Errorf("problem errors %v, want one naming the Idempotency-Key header", m["errors"])
		}
	}
	// Bytes that are not an image at all are no different.
	r := b.uploadBytes(token, []byte("not an image"), false, "Idempotency-Key", "k-1")
	mustProblem(t, r, http.StatusUnprocessableEntity, "/problems/idempotency-key-reused")
	if n := len(spy.created()); n != 1 {
		t.Fatalf("CreatePhoto called %d times, want 1", n)
	}
	again := b.uploadBytes(token, shadedPNG(t, 10), true, "Idempotency-Key", "k-1")
	mustStatus(t, again, http.StatusAccepted)
	if again.json(t)["id"] != first.json(t)["id"] {
		t.Fatalf("the key's own file after a 422: %s, want %s", again.body, first.body)
	}
	if n := photoCount(t, b, token); n != 1 {
		t.Fatalf("%d photos, want 1", n)
	}
}

// TestIdempotencyStoreAnswersLateRetries: when the early look-up misses a
// key (another instance committed it just after), CreatePhoto still makes
// no second photo: the same file gets the first 202, another a 422, and
// neither leaves its stored original behind.
func TestIdempotencyStoreAnswersLateRetries(t *testing.T) {
	t.Parallel()
	spy := &idemSpy{blind: true}
	b := newBundle(t, spyOn(spy))
	_, token := b.signup("late")
	first := b.uploadBytes(token, shadedPNG(t, 10), false, "Idempotency-Key", "k-1")
	mustStatus(t, first, http.StatusAccepted)
	same := b.uploadBytes(token, shadedPNG(t, 10), true, "Idempotency-Key", "k-1")
	mustStatus(t, same, http.StatusAccepted)
	if same.json(t)["id"] != first.json(t)["id"] {
		t.Fatalf("late retry %s, first %s: want the first photo", same.body, first.body)
	}
	other := b.uploadBytes(token, shadedPNG(t, 200), false, "Idempotency-Key", "k-1")
	mustProblem(t, other, http.StatusUnprocessableEntity, "/problems/idempotency-key-reused")

	creates := spy.created()
	if len(creates) != 3 {
		t.Fatalf("CreatePhoto called %d times, want 3: the early path must be blind here", len(creates))
	}
	if creates[1].Idempotency.Digest != creates[0].Idempotency.Digest || creates[2].Idempotency.Digest == creates[0].Idempotency.Digest {
		t.Fatalf("digests %q %q %q: want the first two equal, the third not", creates[0].Idempotency.Digest, creates[1].Idempotency.Digest, creates[2].Idempotency.Digest)
	}
	for _, p := range creates[1:] {
		if _, err := b.media.Open(t.Context(), p.Photo.OriginalKey); !errors.Is(err, media.ErrNotFound) {
			t.Errorf("original %s of a refused upload: %v, want it deleted", p.Photo.OriginalKey, err)
		}
	}
	if n := photoCount(t, b, token); n != 1 {
		t.Fatalf("%d photos, want 1", n)
	}
}

// TestIdempotencyKeyInFlight: while an upload with a key still streams
// its body, another request of the same user with that key gets 409 at
// once; another key, or another user's same key, goes ahead. Once the
// first finishes, the key answers retries with its photo.
func TestIdempotencyKeyInFlight(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	var once sync.Once
	var ownerID atomic.Value // the first user's id, once known
	spy := &idemSpy{onLookup: func(p store.IdempotencyParams) {
		if id, _ := ownerID.Load().(string); p.OwnerID == id && p.Key == "held" {
			once.Do(func() { close(started) })
		}
	}}
	b := newBundle(t, spyOn(spy))
	id, token := b.signup("holder")
	ownerID.Store(id)
	_, otherToken := b.signup("bystander")
	file := shadedPNG(t, 10)

	// The first upload's body stays open until the test writes it.
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest("POST", b.url+"/v1/photos", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "image/png")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", "held")
	type result struct {
		status int
		body   []byte
		err    error
	}
	firstDone := make(chan result, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			firstDone <- result{err: err}
			return
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		firstDone <- result{res.StatusCode, body, err}
	}()
	select {
	case <-started: // the first request holds the key and reads its body
	case r := <-firstDone:
		t.Fatalf("the first upload ended before its body was sent: %+v", r)
	case <-time.After(30 * time.Second):
		t.Fatal("the first upload never reached the handler")
	}
	if _, err := pw.Write(file[:len(file)/2]); err != nil {
		t.Fatal(err)
	}

	r := b.uploadBytes(token, file, false, "Idempotency-Key", "held")
	mustProblem(t, r, http.StatusConflict, "/problems/idempotency-key-in-flight")
	if ra := r.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1", ra)
	}
	mustStatus(t, b.uploadBytes(token, file, false, "Idempotency-Key", "another"), http.StatusAccepted)
	mustStatus(t, b.uploadBytes(otherToken, file, false, "Idempotency-Key", "held"), http.StatusAccepted)

	if _, err := pw.Write(file[len(file)/2:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	var first result
	select {
	case first = <-firstDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the first upload never finished")
	}
	if first.err != nil || first.status != http.StatusAccepted {
		t.Fatalf("first upload: %d %s %v, want 202", first.status, first.body, first.err)
	}
	retry := b.uploadBytes(token, file, true, "Idempotency-Key", "held")
	mustStatus(t, retry, http.StatusAccepted)
	if !bytes.Contains(first.body, []byte(retry.json(t)["id"].(string))) {
		t.Fatalf("retry after the first finished: %s, first %s", retry.body, first.body)
	}
}

// TestIdempotencyKeyExpires: a key answers retries for IdempotencyTTL;
// from then on the same key uploads anew and holds the new file.
func TestIdempotencyKeyExpires(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	spy := &idemSpy{}
	b := newBundle(t, spyOn(spy), func(s *setup) {
		s.clock = clock
		s.opts.IdempotencyTTL = time.Hour
		s.opts.SessionTTL = 100 * time.Hour
	})
	_, token := b.signup("forgetful")
	a, other := shadedPNG(t, 10), shadedPNG(t, 200)
	first := b.uploadBytes(token, a, false, "Idempotency-Key", "k-1")
	mustStatus(t, first, http.StatusAccepted)
	firstID := first.json(t)["id"]
	if d := spy.created()[0].Idempotency.ExpiresAt.Sub(spy.created()[0].Photo.CreatedAt); d != time.Hour {
		t.Errorf("key expires %v after the upload, want IdempotencyTTL 1h", d)
	}

	offset.Store(int64(59 * time.Minute))
	if r := b.uploadBytes(token, a, false, "Idempotency-Key", "k-1"); r.json(t)["id"] != firstID {
		t.Fatalf("retry before the expiry: %d %s, want the first photo %s", r.StatusCode, r.body, firstID)
	}
	offset.Store(int64(61 * time.Minute))
	second := b.uploadBytes(token, a, false, "Idempotency-Key", "k-1")
	mustStatus(t, second, http.StatusAccepted)
	if second.json(t)["id"] == firstID {
		t.Fatalf("upload after the expiry returned the first photo %s", firstID)
	}
	r := b.uploadBytes(token, other, false, "Idempotency-Key", "k-1")
	mustProblem(t, r, http.StatusUnprocessableEntity, "/problems/idempotency-key-reused")
	if n := photoCount(t, b, token); n != 2 {
		t.Fatalf("%d photos, want 2", n)
	}
}

// TestIdempotencyKeyGoneWhileRead: a retry whose key's photo is deleted
// while its body is read gets 409 (its body is spent, nothing made);
// sent again, it uploads anew.
func TestIdempotencyKeyGoneWhileRead(t *testing.T) {
	t.Parallel()
	var armed atomic.Bool
	spy := &idemSpy{}
	spy.onLookup = func(p store.IdempotencyParams) {
		if p.Digest == "" || !armed.CompareAndSwap(true, false) {
			return
		}
		// The retry has read its body: its key's photo goes now.
		ph, err := spy.Store.PhotoByIdempotencyKey(context.Background(), p)
		if err == nil {
			_, _, err = spy.Store.DeletePhoto(context.Background(), store.DeletePhotoParams{ID: ph.ID, OwnerID: ph.OwnerID, Now: time.Now()})
		}
		if err != nil {
			t.Errorf("deleting the key's photo: %v", err)
		}
	}
	b := newBundle(t, spyOn(spy))
	_, token := b.signup("deleter")
	file := shadedPNG(t, 10)
	first := b.uploadBytes(token, file, false, "Idempotency-Key", "k-1")
	mustStatus(t, first, http.StatusAccepted)
	armed.Store(true)
	r := b.uploadBytes(token, file, false, "Idempotency-Key", "k-1")
	mustProblem(t, r, http.StatusConflict, "/problems/idempotency-key-gone")
	if n := len(spy.created()); n != 1 {
		t.Fatalf("CreatePhoto called %d times, want 1", n)
	}
	again := b.uploadBytes(token, file, false, "Idempotency-Key", "k-1")
	mustStatus(t, again, http.StatusAccepted)
	if again.json(t)["id"] == first.json(t)["id"] {
		t.Fatalf("upload after the key's photo was deleted returned it: %s", again.body)
	}
}
