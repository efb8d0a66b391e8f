package app_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"onebox/media"
)

// openSpy records the keys that reach a storage's Open.
type openSpy struct {
	media.Storage
	mu   sync.Mutex
	keys []string
}

func (s *openSpy) Open(ctx context.Context, key string) (media.Object, error) {
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.mu.Unlock()
	return s.Storage.Open(ctx, key)
}

func (s *openSpy) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := s.keys
	s.keys = nil
	return keys
}

// TestMediaKeys: /media answers 404 problem+json for any key outside
// the media key grammar, or private, without asking storage; issue 11
// got a 500 from a 300-byte segment. On a case-insensitive filesystem
// PRIVATE/… would be the private originals, so no spelling of it may
// reach storage.
func TestMediaKeys(t *testing.T) {
	t.Parallel()
	spy := &openSpy{}
	b := newBundle(t, func(s *setup) {
		s.wrapMedia = func(m media.Storage) media.Storage { spy.Storage = m; return spy }
	})
	for _, key := range []string{"photos/p1/w640.jpg", "private/originals/p1"} {
		if _, err := b.media.Put(t.Context(), key, strings.NewReader("secret"), "image/jpeg"); err != nil {
			t.Fatal(err)
		}
	}
	mustStatus(t, b.do("GET", "/media/photos/p1/w640.jpg", ""), http.StatusOK)
	if keys := spy.take(); len(keys) != 1 || keys[0] != "photos/p1/w640.jpg" {
		t.Fatalf("storage was asked for %q", keys)
	}

	paths := []string{
		"/media/photos/" + strings.Repeat("a", 300),
		"/media/" + strings.Repeat("a/", media.MaxKeySegments) + "a",
		"/media/" + strings.Repeat("abcdefg/", media.MaxKeyLen/8) + "a",
		"/media/",
		"/media/private",
		"/media/private/originals/p1",
		"/media/PRIVATE/originals/p1",
		"/media/Private/originals/p1",
		"/media/Private/..",
		"/media/private./originals/p1",
		"/media/privat~1/originals/p1",
		"/media/photos/P1/w640.jpg",
		"/media/photos/p1/W640.JPG",
		"/media/photos/p1//w640.jpg",
		"/media/photos/p1/./w640.jpg",
		"/media/photos/x/../p1/w640.jpg",
		"/media/photos/%2e%2e/private/originals/p1",
		"/media/photos%2fp1%2fw640.jpg",
		"/media/private%2foriginals%2fp1",
		"/media/photos/p1/w640.jpg%00",
		"/media/photos/p1/.w640.jpg.meta",
		"/media/photos/p1/w640.jpg.",
		"/media/photos/p1/w640.jpg::$DATA",
	}
	for _, p := range paths {
		r := b.do("GET", p, "")
		if r.StatusCode != http.StatusNotFound || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %.60s: %d %s, want 404 problem+json", p, r.StatusCode, r.Header.Get("Content-Type"))
		}
		if bytes.Contains(r.body, []byte("secret")) {
			t.Errorf("GET %.60s served a file", p)
		}
	}
	if keys := spy.take(); len(keys) != 0 {
		t.Fatalf("storage was asked for %.60q", keys)
	}
}
