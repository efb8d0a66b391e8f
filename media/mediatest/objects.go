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
	"strings"
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

// testOpenRange reads ranges as an object store answers them: the
// bytes from offset, cut where the object ends, with the whole object's
// Info.
func testOpenRange(t *testing.T, s media.Storage) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i)
	}
	info := mustPut(t, s, "k", data, "application/octet-stream")
	tests := []struct {
		offset, length int64
		want           []byte
	}{
		{0, 1, data[:1]},
		{500, 100, data[500:600]},
		{990, 10, data[990:]},
		{990, 500, data[990:]}, // past the end: cut
		{999, 1, data[999:]},
		{0, 1000, data},
	}
	for _, tt := range tests {
		obj, err := s.OpenRange(t.Context(), "k", tt.offset, tt.length)
		if err != nil {
			t.Fatalf("OpenRange(%d, %d): %v", tt.offset, tt.length, err)
		}
		got, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatalf("reading OpenRange(%d, %d): %v", tt.offset, tt.length, err)
		}
		if !bytes.Equal(got, tt.want) {
			t.Fatalf("OpenRange(%d, %d) read %d bytes %v…, want %d bytes %v…", tt.offset, tt.length, len(got), head(got), len(tt.want), head(tt.want))
		}
		if i := obj.Info(); i.Size != info.Size || i.ETag != info.ETag || i.ContentType != info.ContentType {
			t.Fatalf("OpenRange(%d, %d).Info() = %+v, want the whole object's %+v", tt.offset, tt.length, i, info)
		}
	}
	for _, off := range []int64{1000, 5000} {
		obj, err := s.OpenRange(t.Context(), "k", off, 10)
		if err == nil {
			obj.Close()
		}
		if !errors.Is(err, media.ErrRange) {
			t.Errorf("OpenRange(%d, 10) of 1000 bytes = %v, want ErrRange", off, err)
		}
	}
	obj, err := s.OpenRange(t.Context(), "never-put", 0, 10)
	if err == nil {
		obj.Close()
	}
	if !errors.Is(err, media.ErrNotFound) {
		t.Errorf("OpenRange of a missing key = %v, want ErrNotFound", err)
	}
}

func head(b []byte) []byte { return b[:min(len(b), 4)] }

func testStat(t *testing.T, s media.Storage) {
	data := []byte("some bytes")
	put := mustPut(t, s, "photos/p1/w640.jpg", data, "image/jpeg")
	info, err := s.Stat(t.Context(), "photos/p1/w640.jpg")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Size != put.Size || info.ETag != put.ETag || info.ContentType != put.ContentType || info.ModTime.IsZero() {
		t.Fatalf("Stat = %+v, want the %+v of Put", info, put)
	}
	if _, err := s.Stat(t.Context(), "photos/p1/never"); !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("Stat of a missing key = %v, want ErrNotFound", err)
	}
}

// serveRanges serves key as the media handler does: Stat, then
// http.ServeContent over a media.ReadSeeker.
func serveRanges(t *testing.T, s media.Storage, key string, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	info, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	rs := media.NewReadSeeker(t.Context(), s, key, info)
	defer rs.Close()
	rec := httptest.NewRecorder()
	rec.Header().Set("ETag", info.ETag)
	http.ServeContent(rec, req, "", info.ModTime, rs)
	return rec
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
		req := httptest.NewRequest(http.MethodGet, "/media/k", nil)
		if tt.header != "" {
			req.Header.Set("Range", tt.header)
		}
		rec := serveRanges(t, s, "k", req)
		if rec.Code != tt.status {
			t.Fatalf("Range %q: status %d, want %d", tt.header, rec.Code, tt.status)
		}
		if tt.status != http.StatusRequestedRangeNotSatisfiable && rec.Body.String() != tt.want {
			t.Fatalf("Range %q: body %q, want %q", tt.header, rec.Body, tt.want)
		}
	}
	// Several ranges: each is a range read of its own.
	req := httptest.NewRequest(http.MethodGet, "/media/k", nil)
	req.Header.Set("Range", "bytes=0-1,5-6,18-")
	rec := serveRanges(t, s, "k", req)
	if rec.Code != http.StatusPartialContent {
		t.Fatalf("three ranges: status %d, want 206", rec.Code)
	}
	for _, part := range []string{"01", "56", "ij"} {
		if !strings.Contains(rec.Body.String(), "\r\n\r\n"+part+"\r\n") {
			t.Fatalf("three ranges: body %q lacks the part %q", rec.Body, part)
		}
	}

	// The ETag is what makes a conditional request answer 304.
	req = httptest.NewRequest(http.MethodGet, "/media/k", nil)
	req.Header.Set("If-None-Match", info.ETag)
	if rec := serveRanges(t, s, "k", req); rec.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match with the Put ETag: status %d, want 304", rec.Code)
	}

	// A version replaced between the Stat and a range read is not
	// spliced into the answer.
	old, err := s.Stat(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", []byte("another version, as long"), "text/plain")
	rs := media.NewReadSeeker(t.Context(), s, "k", old)
	defer rs.Close()
	if _, err := rs.Seek(2, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rs); !errors.Is(err, media.ErrChanged) {
		t.Fatalf("reading a replaced version = %v, want ErrChanged", err)
	}
}
