package mediatest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/iotest"

	"onebox/media"
)

func testRoundTrip(t *testing.T, s media.Storage) {
	data := []byte("\xff\xd8\xff not quite a JPEG")
	info := mustPut(t, s, "photos/p1/w640.jpg", data, "image/jpeg")
	requireObject(t, s, "photos/p1/w640.jpg", data, info)
}

func testEmpty(t *testing.T, s media.Storage) {
	info := mustPut(t, s, "empty", nil, "text/plain")
	requireObject(t, s, "empty", nil, info)
}

func testETag(t *testing.T, s media.Storage) {
	first := mustPut(t, s, "k", []byte("one"), "text/plain")
	again := mustPut(t, s, "k", []byte("one"), "text/plain")
	if again.ETag != first.ETag {
		t.Errorf("ETag of the same bytes put again = %s, was %s", again.ETag, first.ETag)
	}
	elsewhere := mustPut(t, s, "other/k", []byte("one"), "text/plain")
	if elsewhere.ETag != first.ETag {
		t.Errorf("ETag of the same bytes under another key = %s, want %s", elsewhere.ETag, first.ETag)
	}
	changed := mustPut(t, s, "k", []byte("two"), "text/plain")
	if changed.ETag == first.ETag {
		t.Errorf("ETag of other bytes = %s, the same as before", changed.ETag)
	}
}

func testReplace(t *testing.T, s media.Storage) {
	mustPut(t, s, "k", []byte("a longer first version"), "image/png")
	info := mustPut(t, s, "k", []byte("second"), "image/jpeg")
	requireObject(t, s, "k", []byte("second"), info)
}

func testNotFound(t *testing.T, s media.Storage) {
	mustPut(t, s, "photos/p1/w640.jpg", []byte("v"), "image/jpeg")
	for _, key := range []string{"never-put", "photos/p2/w640.jpg", "photos/p1/w640.jpg/below"} {
		requireNotFound(t, s, key)
	}
}

func testDelete(t *testing.T, s media.Storage) {
	mustPut(t, s, "photos/p1/a.jpg", []byte("a"), "image/jpeg")
	mustPut(t, s, "photos/p1/b.jpg", []byte("b"), "image/jpeg")
	mustPut(t, s, "photos/p1/c.jpg", []byte("c"), "image/jpeg")
	kept := mustPut(t, s, "photos/p2/a.jpg", []byte("other"), "image/jpeg")
	mustDelete(t, s, "photos/p1/a.jpg")
	requireNotFound(t, s, "photos/p1/a.jpg")
	mustDelete(t, s, "photos/p1/b.jpg", "photos/p1/c.jpg")
	requireNotFound(t, s, "photos/p1/b.jpg")
	requireNotFound(t, s, "photos/p1/c.jpg")
	requireObject(t, s, "photos/p2/a.jpg", []byte("other"), kept)
}

func testDeleteMissing(t *testing.T, s media.Storage) {
	mustDelete(t, s)
	mustDelete(t, s, "never-put", "photos/never/put.jpg")
	mustPut(t, s, "k", []byte("v"), "text/plain")
	mustDelete(t, s, "k")
	mustDelete(t, s, "k")
}

func testPutAfterDelete(t *testing.T, s media.Storage) {
	mustPut(t, s, "photos/p1/a.jpg", []byte("first"), "image/jpeg")
	mustDelete(t, s, "photos/p1/a.jpg")
	info := mustPut(t, s, "photos/p1/a.jpg", []byte("second"), "image/jpeg")
	requireObject(t, s, "photos/p1/a.jpg", []byte("second"), info)
}

// testFailedPut checks that a Put whose reader fails stores nothing: not
// a truncated object, and not over the previous one.
func testFailedPut(t *testing.T, s media.Storage) {
	errRead := errors.New("the client went away")
	failing := func() io.Reader {
		return io.MultiReader(bytes.NewReader(make([]byte, 64<<10)), iotest.ErrReader(errRead))
	}
	if _, err := s.Put(t.Context(), "photos/new/a.jpg", failing(), "image/jpeg"); err == nil {
		t.Fatal("Put of a failing reader succeeded")
	}
	requireNotFound(t, s, "photos/new/a.jpg")

	old := mustPut(t, s, "photos/old/a.jpg", []byte("old"), "image/jpeg")
	if _, err := s.Put(t.Context(), "photos/old/a.jpg", failing(), "image/png"); err == nil {
		t.Fatal("Put of a failing reader succeeded")
	}
	requireObject(t, s, "photos/old/a.jpg", []byte("old"), old)
}

func testCanceledPut(t *testing.T, s media.Storage) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Put(ctx, "k", bytes.NewReader([]byte("v")), "text/plain")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a canceled context = %v, want context.Canceled", err)
	}
	requireNotFound(t, s, "k")
}

// testLarge streams 8 MiB from a reader that is neither seekable nor
// sized, as an upload is.
func testLarge(t *testing.T, s media.Storage) {
	const size = 8 << 20
	random := func() io.Reader { return io.LimitReader(rand.NewChaCha8([32]byte{1}), size) }
	want := sha256.New()
	if _, err := io.Copy(want, random()); err != nil {
		t.Fatal(err)
	}
	info, err := s.Put(t.Context(), "large", struct{ io.Reader }{random()}, "application/octet-stream")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if info.Size != size {
		t.Fatalf("Put returned size %d, want %d", info.Size, size)
	}
	obj, err := s.Open(t.Context(), "large")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer obj.Close()
	got := sha256.New()
	n, err := io.Copy(got, obj)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	if n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("read %d bytes, not the %d put", n, size)
	}
	if obj.Info().ETag != info.ETag {
		t.Fatalf("Open ETag %s, Put returned %s", obj.Info().ETag, info.ETag)
	}
}

func testSeek(t *testing.T, s media.Storage) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i)
	}
	mustPut(t, s, "k", data, "application/octet-stream")
	obj, err := s.Open(t.Context(), "k")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer obj.Close()
	tests := []struct {
		offset int64
		whence int
		want   []byte
	}{
		{500, io.SeekStart, data[500:600]},
		{-10, io.SeekEnd, data[990:]},
		{-100, io.SeekCurrent, data[900:910]},
		{0, io.SeekStart, data[:1]},
	}
	for _, tt := range tests {
		if _, err := obj.Seek(tt.offset, tt.whence); err != nil {
			t.Fatalf("Seek(%d, %d): %v", tt.offset, tt.whence, err)
		}
		got := make([]byte, len(tt.want))
		if _, err := io.ReadFull(obj, got); err != nil {
			t.Fatalf("read after Seek(%d, %d): %v", tt.offset, tt.whence, err)
		}
		if !bytes.Equal(got, tt.want) {
			t.Fatalf("after Seek(%d, %d) read %v, want %v", tt.offset, tt.whence, got, tt.want)
		}
	}
}

// testRanges serves an object as the media handler does, with
// http.ServeContent, and asks for byte ranges.
func testRanges(t *testing.T, s media.Storage) {
	data := []byte("0123456789abcdefghij")
	info := mustPut(t, s, "k", data, "text/plain")
	tests := []struct {
		header string
		status int
		want   string
	}{
		{"", http.StatusOK, string(data)},
		{"bytes=2-5", http.StatusPartialContent, "2345"},
		{"bytes=-3", http.StatusPartialContent, "hij"},
		{"bytes=18-", http.StatusPartialContent, "ij"},
		{"bytes=50-", http.StatusRequestedRangeNotSatisfiable, ""},
	}
	for _, tt := range tests {
		obj, err := s.Open(t.Context(), "k")
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		req := httptest.NewRequest(http.MethodGet, "/media/k", nil)
		if tt.header != "" {
			req.Header.Set("Range", tt.header)
		}
		rec := httptest.NewRecorder()
		rec.Header().Set("ETag", obj.Info().ETag)
		http.ServeContent(rec, req, "", obj.Info().ModTime, obj)
		obj.Close()
		if rec.Code != tt.status {
			t.Fatalf("Range %q: status %d, want %d", tt.header, rec.Code, tt.status)
		}
		if tt.status != http.StatusRequestedRangeNotSatisfiable && rec.Body.String() != tt.want {
			t.Fatalf("Range %q: body %q, want %q", tt.header, rec.Body, tt.want)
		}
	}

	// The ETag is what makes a conditional request answer 304.
	obj, err := s.Open(t.Context(), "k")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer obj.Close()
	req := httptest.NewRequest(http.MethodGet, "/media/k", nil)
	req.Header.Set("If-None-Match", info.ETag)
	rec := httptest.NewRecorder()
	rec.Header().Set("ETag", obj.Info().ETag)
	http.ServeContent(rec, req, "", obj.Info().ModTime, obj)
	if rec.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match with the Put ETag: status %d, want 304", rec.Code)
	}
}
