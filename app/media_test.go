package app_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"regexp"
	"strconv"
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

// TestMediaRanges: a Range header may not make the answer larger than
// the file. Issue 11 got 1 MB for a 32 KB file with 8000 ranges "0-0".
// Past eight ranges the whole file answers with 200; overlapping or
// touching ranges are coalesced; ordinary multi-range requests still get
// multipart/byteranges; a range past the end is a 416 problem.
func TestMediaRanges(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	const size = 32 << 10
	data := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{11})
	_, _ = rng.Read(data)
	if _, err := b.media.Put(t.Context(), "photos/p1/w640.jpg", bytes.NewReader(data), "image/jpeg"); err != nil {
		t.Fatal(err)
	}
	repeat := func(spec string, n int) string {
		return "bytes=" + strings.TrimSuffix(strings.Repeat(spec+",", n), ",")
	}
	type part struct{ start, end int } // inclusive
	tests := []struct {
		name   string
		header string
		status int
		parts  []part // for a 206
	}{
		{"issue 11", repeat("0-0", 8000), http.StatusOK, nil},
		{"nine disjoint", "bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16", http.StatusOK, nil},
		{"nine with empty specs", "bytes=" + strings.Repeat(",", 100) + repeat("0-0", 9)[len("bytes="):], http.StatusOK, nil},
		{"eight identical", repeat("0-0", 8), http.StatusPartialContent, []part{{0, 0}}},
		{"eight whole", repeat("0-", 8), http.StatusPartialContent, []part{{0, size - 1}}},
		{"eight suffixes", repeat("-1000", 8), http.StatusPartialContent, []part{{size - 1000, size - 1}}},
		{"overlapping and touching", "bytes=100-199,0-99,150-299", http.StatusPartialContent, []part{{0, 299}}},
		{"some coalesced", "bytes=5000-5009,0-9,5-14", http.StatusPartialContent, []part{{0, 14}, {5000, 5009}}},
		{"eight disjoint", "bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14", http.StatusPartialContent,
			[]part{{0, 0}, {2, 2}, {4, 4}, {6, 6}, {8, 8}, {10, 10}, {12, 12}, {14, 14}}},
		{"two", "bytes=0-9,1000-1009", http.StatusPartialContent, []part{{0, 9}, {1000, 1009}}},
		{"one", "bytes=10-19", http.StatusPartialContent, []part{{10, 19}}},
		{"past the end", "bytes=40000-", http.StatusRequestedRangeNotSatisfiable, nil},
		{"all past the end", repeat("40000-40001", 3), http.StatusRequestedRangeNotSatisfiable, nil},
		{"malformed", "bytes=abc", http.StatusRequestedRangeNotSatisfiable, nil},
		// Found by FuzzRange: ServeContent answered these with a 206 and
		// "Content-Range: bytes 32768-32767/32768".
		{"zero suffix", "bytes=-0", http.StatusRequestedRangeNotSatisfiable, nil},
		{"zero suffixes", "bytes=-0, -0", http.StatusRequestedRangeNotSatisfiable, nil},
		{"zero suffix and a range", "bytes=-0,10-19", http.StatusPartialContent, []part{{10, 19}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do("GET", "/media/photos/p1/w640.jpg", "", "Range", tt.header)
			mustStatus(t, r, tt.status)
			// The bound that matters: never more than the file, plus the
			// headers of at most eight parts.
			if len(r.body) > size+8*200 {
				t.Fatalf("%d bytes of body for a %d-byte file", len(r.body), size)
			}
			switch tt.status {
			case http.StatusOK:
				if !bytes.Equal(r.body, data) {
					t.Fatalf("200 with %d bytes, not the file", len(r.body))
				}
			case http.StatusRequestedRangeNotSatisfiable:
				if r.Header.Get("Content-Type") != "application/problem+json" || r.json(t)["status"] != float64(tt.status) {
					t.Fatalf("416 %s: %s", r.Header.Get("Content-Type"), r.body)
				}
			case http.StatusPartialContent:
				got := parts(t, r)
				if len(got) != len(tt.parts) {
					t.Fatalf("%d parts %v, want %v", len(got), got, tt.parts)
				}
				for i, p := range tt.parts {
					want := "bytes " + strconv.Itoa(p.start) + "-" + strconv.Itoa(p.end) + "/" + strconv.Itoa(size)
					if got[i].contentRange != want || !bytes.Equal(got[i].body, data[p.start:p.end+1]) {
						t.Fatalf("part %d: %q with %d bytes, want %q", i, got[i].contentRange, len(got[i].body), want)
					}
				}
			}
		})
	}
}

type rangePart struct {
	contentRange string
	body         []byte
}

// parts returns the ranges of a 206: one, or those of its multipart
// body.
func parts(t *testing.T, r response) []rangePart {
	t.Helper()
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	if mt != "multipart/byteranges" {
		return []rangePart{{r.Header.Get("Content-Range"), r.body}}
	}
	var ps []rangePart
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return ps
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, rangePart{p.Header.Get("Content-Range"), body})
	}
}

// TestStaticRanges: the page's static files bound their ranges too.
func TestStaticRanges(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	page := b.do("GET", "/", "")
	mustStatus(t, page, http.StatusOK)
	asset := regexp.MustCompile(`/static/[^"'?#\s]+`).Find(page.body)
	if asset == nil {
		t.Fatalf("no /static/ URL in the page")
	}
	whole := b.do("GET", string(asset), "")
	mustStatus(t, whole, http.StatusOK)
	// Fewer bytes than the file, or ServeContent itself ignores them.
	n := len(whole.body) / 2
	r := b.do("GET", string(asset), "", "Range", "bytes="+strings.TrimSuffix(strings.Repeat("0-0,", n), ","))
	mustStatus(t, r, http.StatusOK)
	if !bytes.Equal(r.body, whole.body) {
		t.Fatalf("%d bytes for %d ranges of a %d-byte file", len(r.body), n, len(whole.body))
	}
}
