package mediatest

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"onebox/media"
)

// testBadKeys checks that every method refuses the keys media.ValidKey
// refuses, before touching anything.
func testBadKeys(t *testing.T, s media.Storage) {
	ctx := t.Context()
	keys := []string{
		"photos/" + strings.Repeat("a", 300), // longer than a file name may be
		strings.Repeat("a", media.MaxKeySegmentLen+1),
		strings.Repeat("a/", media.MaxKeySegments) + "a",
		strings.Repeat("abcdefg/", media.MaxKeyLen/8) + "a",
		// On a case-insensitive filesystem these would be private/….
		"PRIVATE/originals/p1",
		"Private/originals/p1",
		"private./originals/p1",
		"Private/..",
		"photos/P1/w640.jpg",
		"a b",
		"a?b",
		"a:b",
		"a~1",
		"é",
		".hidden",
		"a/.meta",
		"a.",
		"a..b",
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
			t.Errorf("Put(%.40q) = %v, want ErrBadKey", key, err)
		}
		obj, err := s.Open(ctx, key)
		if err == nil {
			obj.Close()
		}
		if !errors.Is(err, media.ErrBadKey) {
			t.Errorf("Open(%.40q) = %v, want ErrBadKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, media.ErrBadKey) {
			t.Errorf("Delete(%.40q) = %v, want ErrBadKey", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, media.ErrBadKey) {
			t.Errorf("Stat(%.40q) = %v, want ErrBadKey", key, err)
		}
		obj, err = s.OpenRange(ctx, key, 0, 1)
		if err == nil {
			obj.Close()
		}
		if !errors.Is(err, media.ErrBadKey) {
			t.Errorf("OpenRange(%.40q) = %v, want ErrBadKey", key, err)
		}
		if _, err := s.URL(ctx, key); !errors.Is(err, media.ErrBadKey) {
			t.Errorf("URL(%.40q) = %v, want ErrBadKey", key, err)
		}
	}
	// Nothing was written, under any spelling.
	for _, key := range []string{"private/originals/p1", "photos/p1/w640.jpg", "a"} {
		requireNotFound(t, s, key)
	}
	// Delete checks every key before it removes any.
	mustPut(t, s, "k", []byte("v"), "text/plain")
	if err := s.Delete(ctx, "k", "K"); !errors.Is(err, media.ErrBadKey) {
		t.Errorf("Delete(\"k\", \"K\") = %v, want ErrBadKey", err)
	}
	read(t, s, "k")
}

// testKeyLimits checks that keys at the limits of media.ValidKey work,
// and the pipeline's forms of keys.
func testKeyLimits(t *testing.T, s media.Storage) {
	seg := func(n int) string { return strings.Repeat("z", n) }
	keys := []string{
		seg(media.MaxKeySegmentLen),
		strings.Repeat("d/", media.MaxKeySegments-1) + "k",
		strings.Repeat(seg(31)+"/", media.MaxKeySegments-1) + seg(media.MaxKeyLen-32*(media.MaxKeySegments-1)),
		"0/a.b-c_d",
		"photos/0190f3c2-7a6b-7c3d-9e1f-0a1b2c3d4e5f/w2048.jpg",
		"photos/0190f3c2-7a6b-7c3d-9e1f-0a1b2c3d4e5f/thumb.png",
		"private/originals/0190f3c2-7a6b-7c3d-9e1f-0a1b2c3d4e5f",
	}
	for _, key := range keys {
		if !media.ValidKey(key) {
			t.Fatalf("the suite's key %q is not valid", key)
		}
		data := []byte(key)
		info := mustPut(t, s, key, data, "text/plain")
		requireObject(t, s, key, data, info)
		mustDelete(t, s, key)
		requireNotFound(t, s, key)
	}
}

// testURL checks the addresses clients are given: one per public key,
// and none that serves a private key without expiring. An absolute
// address (a bucket, a CDN, a presigned URL) is fetched, and must serve
// the bytes put; a path is this service's own route, tested in app.
func testURL(t *testing.T, s media.Storage) {
	ctx := t.Context()
	keys := []string{
		"photos/p1/w640.jpg",
		"photos/p1/w1280.jpg",
		"photos/p2/w640.jpg",
		"photos/p2/a_b-c.d.jpg",
	}
	seen := make(map[string]string)
	for _, key := range keys {
		data := []byte("bytes of " + key)
		mustPut(t, s, key, data, "image/jpeg")
		u, err := s.URL(ctx, key)
		if err != nil {
			t.Fatalf("URL(%q): %v", key, err)
		}
		if u == "" {
			t.Fatalf("URL(%q) is empty", key)
		}
		if other, ok := seen[u]; ok {
			t.Errorf("URL(%q) = URL(%q) = %q", key, other, u)
		}
		seen[u] = key
		if again, err := s.URL(ctx, key); err != nil || again != u {
			t.Errorf("URL(%q) = %q, then %q, %v: a public key's URL is stable", key, u, again, err)
		}
		requireServes(t, u, data)
	}

	const private = "private/originals/p1"
	mustPut(t, s, private, []byte("the original"), "image/jpeg")
	u, err := s.URL(ctx, private)
	if errors.Is(err, media.ErrNotServed) {
		return
	}
	if err != nil {
		t.Fatalf("URL(%q) = %v, want a presigned URL or ErrNotServed", private, err)
	}
	pu, err := url.Parse(u)
	if err != nil || !pu.IsAbs() {
		t.Fatalf("URL(%q) = %q: a private key's URL must be presigned, absolute", private, u)
	}
	if !strings.Contains(pu.RawQuery, "Expires") {
		t.Errorf("URL(%q) = %q: no expiry in a private key's URL", private, u)
	}
	requireServes(t, u, []byte("the original"))
}

// requireServes fetches an absolute u and checks that it serves data. A
// path is left alone.
func requireServes(t *testing.T, u string, data []byte) {
	t.Helper()
	if pu, err := url.Parse(u); err != nil || !pu.IsAbs() {
		return
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("GET %s = %d %q, %v; want 200 %q", u, resp.StatusCode, got, err, data)
	}
}
