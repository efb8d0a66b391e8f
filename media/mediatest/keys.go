package mediatest

import (
	"bytes"
	"errors"
	"testing"

	"onebox/media"
)

// testBadKeys checks that every method refuses keys that are not clean
// relative paths, before touching anything.
func testBadKeys(t *testing.T, s media.Storage) {
	ctx := t.Context()
	keys := []string{
		"",
		".",
		"..",
		"../x",
		"a/..",
		"a/../b",
		"private/../../etc/passwd",
		"/abs",
		"a/",
		"a//b",
		"a/./b",
		"a\\b",
		"..\\x",
		"a\x00b",
	}
	for _, key := range keys {
		if _, err := s.Put(ctx, key, bytes.NewReader([]byte("v")), "text/plain"); !errors.Is(err, media.ErrBadKey) {
			t.Errorf("Put(%q) = %v, want ErrBadKey", key, err)
		}
		obj, err := s.Open(ctx, key)
		if err == nil {
			obj.Close()
		}
		if !errors.Is(err, media.ErrBadKey) {
			t.Errorf("Open(%q) = %v, want ErrBadKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, media.ErrBadKey) {
			t.Errorf("Delete(%q) = %v, want ErrBadKey", key, err)
		}
	}
}

func testURL(t *testing.T, s media.Storage) {
	keys := []string{
		"photos/p1/w640.jpg",
		"photos/p1/w1280.jpg",
		"photos/p2/w640.jpg",
		"photos/a b/c?d#e%f.jpg",
		"photos/a%20b/c.jpg",
		"photos/é/ü.jpg",
	}
	seen := make(map[string]string)
	for _, key := range keys {
		u := s.URL(key)
		if u == "" {
			t.Errorf("URL(%q) is empty", key)
			continue
		}
		if other, ok := seen[u]; ok {
			t.Errorf("URL(%q) = URL(%q) = %q", key, other, u)
		}
		seen[u] = key
	}
}
