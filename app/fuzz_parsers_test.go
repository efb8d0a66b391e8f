package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"unicode"
	"unicode/utf8"
)

// The request parsers not covered by fuzz_test.go: Range,
// Idempotency-Key, Last-Event-ID, raw query strings and multipart
// bodies. Each drives the real handler and checks the status class, the
// problem on a 4xx and, where the client picks it, the answer's size.

// FuzzRange sends any Range header for media files of three sizes: the
// answer is the whole file (200), at most eight ranges of it (206, each
// part the bytes it names) or a 416 problem, and never larger than the
// file plus the framing of eight parts.
func FuzzRange(f *testing.F) {
	for _, s := range []string{
		"bytes=0-0", "bytes=0-", "bytes=-1", "bytes=-0", "bytes=0-0,2-2,4-4", "bytes=5-1", "bytes=99999999999999999999-",
		"bytes=" + strings.TrimSuffix(strings.Repeat("0-0,", 9), ","), "bytes=" + strings.Repeat(",", 50) + "1-2",
		"bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16", "bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14",
		"bytes=100-199,0-99,150-299", "bytes= 1 - 2 ,\t3-4", "bytes=--1", "bytes=1--2", "items=0-1", "bytes=", "bytes=-", "",
	} {
		for sel := range uint8(3) {
			f.Add(s, sel)
		}
	}
	b := newBundle(f, func(s *setup) { s.noWorkers = true })
	rng := rand.NewChaCha8([32]byte{14})
	var files [3][]byte
	for i, size := range []int{1, 100, 32 << 10} {
		files[i] = make([]byte, size)
		_, _ = rng.Read(files[i])
		if _, err := b.media.Put(f.Context(), fmt.Sprintf("photos/p%d/w640.jpg", i), bytes.NewReader(files[i]), "image/jpeg"); err != nil {
			f.Fatal(err)
		}
	}
	// A part's framing: the boundary line, Content-Type and Content-Range.
	const framing = 256
	f.Fuzz(func(t *testing.T, header string, sel uint8) {
		i := int(sel % 3)
		data := files[i]
		req := httptest.NewRequest("GET", fmt.Sprintf("/media/photos/p%d/w640.jpg", i), nil)
		req.Header.Set("Range", header)
		rec := serve(b, req)
		checkAnswer(t, rec, header)
		if n := rec.Body.Len(); n > len(data)+9*framing {
			t.Fatalf("Range %q: %d bytes for a %d-byte file", header, n, len(data))
		}
		switch rec.Code {
		case http.StatusOK:
			if !bytes.Equal(rec.Body.Bytes(), data) {
				t.Fatalf("Range %q: 200 with %d bytes, not the file", header, rec.Body.Len())
			}
		case http.StatusPartialContent:
			checkParts(t, rec, header, data)
		case http.StatusRequestedRangeNotSatisfiable:
		default:
			t.Fatalf("Range %q: status %d", header, rec.Code)
		}
	})
}

// checkParts fails unless the 206 in rec holds one to eight ranges, each
// the bytes of data its Content-Range names.
func checkParts(t *testing.T, rec *httptest.ResponseRecorder, header string, data []byte) {
	t.Helper()
	type part struct {
		contentRange string
		body         []byte
	}
	var ps []part
	mt, params, err := mime.ParseMediaType(rec.Header().Get("Content-Type"))
	if err != nil {
		t.Fatalf("Range %q: Content-Type: %v", header, err)
	}
	if mt != "multipart/byteranges" {
		ps = append(ps, part{rec.Header().Get("Content-Range"), rec.Body.Bytes()})
	} else {
		mr := multipart.NewReader(bytes.NewReader(rec.Body.Bytes()), params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			var body bytes.Buffer
			if _, err := body.ReadFrom(p); err != nil {
				t.Fatalf("Range %q: part %d: %v", header, len(ps), err)
			}
			ps = append(ps, part{p.Header.Get("Content-Range"), body.Bytes()})
		}
	}
	if len(ps) == 0 || len(ps) > 8 {
		t.Fatalf("Range %q: 206 with %d parts", header, len(ps))
	}
	for _, p := range ps {
		var start, end, size int
		if _, err := fmt.Sscanf(p.contentRange, "bytes %d-%d/%d", &start, &end, &size); err != nil ||
			size != len(data) || start < 0 || end < start || end >= size || !bytes.Equal(p.body, data[start:end+1]) {
			t.Fatalf("Range %q: part %q with %d bytes (%v)", header, p.contentRange, len(p.body), err)
		}
	}
}

// FuzzIdempotencyKey uploads a new file under any Idempotency-Key: the
// answer is a 202, or a 4xx problem (a key too long or not text, or one
// an earlier run used for another file). After a 202, the same file again under the
// key is the same 202, and another file under it a 422.
func FuzzIdempotencyKey(f *testing.F) {
	for _, s := range []string{
		"", "k", "a1b2c3", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, strings.Repeat("k", 200), strings.Repeat("k", 201),
		" ", "\t", "é", "\x00", "k\r\nX: y", strings.Repeat("é", 100), "%00", "../../etc",
	} {
		f.Add(s)
	}
	b := newBundle(f, func(s *setup) { s.noWorkers = true })
	_, token := b.signup("fuzzkey")
	img := smallPNG(f)
	var n atomic.Int64
	// file is a PNG no earlier request sent: bytes after its end make it
	// another file to the key's digest and change nothing else.
	file := func() []byte { return fmt.Appendf(bytes.Clone(img), "%d", n.Add(1)) }
	upload := func(key string, data []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/v1/photos", bytes.NewReader(data))
		req.Header.Set("Content-Type", "image/png")
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Idempotency-Key", key)
		return serve(b, req)
	}
	id := func(rec *httptest.ResponseRecorder) string {
		var p struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &p)
		return p.ID
	}
	f.Fuzz(func(t *testing.T, key string) {
		data := file()
		first := upload(key, data)
		checkAnswer(t, first, key)
		switch {
		case len(key) > 200:
			if first.Code != http.StatusBadRequest {
				t.Fatalf("key of %d bytes: status %d, want 400", len(key), first.Code)
			}
			return
		case !utf8.ValidString(key) || strings.ContainsFunc(key, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }):
			if first.Code != http.StatusBadRequest {
				t.Fatalf("key %q: status %d, want 400", key, first.Code)
			}
			return
		case first.Code == http.StatusAccepted:
		case first.Code == http.StatusUnprocessableEntity && key != "":
			return // an earlier run took the key
		default:
			t.Fatalf("key %q: status %d: %s", key, first.Code, first.Body)
		}
		if id(first) == "" {
			t.Fatalf("key %q: 202 without an id: %s", key, first.Body)
		}
		again := upload(key, data)
		checkAnswer(t, again, key)
		if again.Code != http.StatusAccepted {
			t.Fatalf("key %q: the same file again: status %d: %s", key, again.Code, again.Body)
		}
		if same := id(again) == id(first); same != (key != "") {
			t.Fatalf("key %q: the same file again got photo %s after %s", key, id(again), id(first))
		}
		if key == "" {
			return
		}
		other := upload(key, file())
		checkAnswer(t, other, key)
		if other.Code != http.StatusUnprocessableEntity {
			t.Fatalf("key %q: another file: status %d, want 422: %s", key, other.Code, other.Body)
		}
	})
}

// cancelOnWrite ends the request's context at the first byte written:
// an event stream then stops at its first read instead of running for
// an hour, and a fuzz input costs one request.
type cancelOnWrite struct {
	*httptest.ResponseRecorder
	cancel context.CancelFunc
}

func (w cancelOnWrite) Write(p []byte) (int, error) {
	defer w.cancel()
	return w.ResponseRecorder.Write(p)
}

// FuzzLastEventID opens the caller's event stream with any Last-Event-ID
// header or last_event_id parameter: a number this API could have sent
// resumes the stream (200, text/event-stream), anything else is a 400
// problem, for GET and HEAD alike.
func FuzzLastEventID(f *testing.F) {
	for _, s := range []string{"", "0", "1", "-1", "007", "+1", "1e3", "9223372036854775807", "9223372036854775808", " 1", "0x10", "１"} {
		f.Add(s, "")
		f.Add("", s)
	}
	b := newBundle(f, func(s *setup) { s.noWorkers = true })
	_, token := b.signup("fuzzevents")
	f.Fuzz(func(t *testing.T, header, param string) {
		for _, method := range []string{"GET", "HEAD"} {
			req := httptest.NewRequest(method, "/v1/users/me/events", nil)
			req.URL.RawQuery = url.Values{"last_event_id": {param}}.Encode()
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Last-Event-ID", header)
			ctx, cancel := context.WithCancel(req.Context())
			rec := cancelOnWrite{httptest.NewRecorder(), cancel}
			req = req.WithContext(ctx)
			req.RemoteAddr = "192.0.2.1:1234"
			b.handler.ServeHTTP(rec, req)
			cancel()
			input := header + "|" + param
			checkAnswer(t, rec.ResponseRecorder, input)
			v := header
			if v == "" {
				v = param
			}
			n, err := strconv.ParseInt(v, 10, 64)
			valid := v == "" || err == nil && n >= 0
			switch {
			case valid && rec.Code == http.StatusOK:
				if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" {
					t.Fatalf("%s %q: 200 with Content-Type %q", method, input, ct)
				}
			case !valid && rec.Code == http.StatusBadRequest:
			default:
				t.Fatalf("%s %q: status %d: %s", method, input, rec.Code, rec.Body)
			}
		}
	})
}

// FuzzQuery sends any raw query string (bad escapes, repeated and
// unknown names included) to the list routes: a 200 or a 4xx problem.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"", "limit=1", "limit=1&limit=2", "cursor=%zz", "limit=%", "limit=1;cursor=x", "cursor=&limit=", "a=b&&&=&",
		"limit=0x10", "limit=1e2", "limit=+1", "limit=-0", "limit=%20%31", "cursor=" + strings.Repeat("%41", 2000), "%", "?", "#",
		"limit=10&cursor=dTE6MDE5MDAwMDAtMDAwMC03MDAwLTgwMDAtMDAwMDAwMDAwMDAw",
	} {
		f.Add(s)
	}
	b := newBundle(f, func(s *setup) { s.noWorkers = true })
	id, token := b.signup("fuzzquery")
	b.signup("fuzzquery2")
	up := httptest.NewRequest("POST", "/v1/photos", bytes.NewReader(smallPNG(f)))
	up.Header.Set("Content-Type", "image/png")
	up.Header.Set("Authorization", "Bearer "+token)
	if rec := serve(b, up); rec.Code != http.StatusAccepted {
		f.Fatalf("upload: %d %s", rec.Code, rec.Body)
	}
	paths := []string{"/v1/users", "/v1/users/" + id + "/photos", "/v1/users/me/photos"}
	f.Fuzz(func(t *testing.T, query string) {
		for _, p := range paths {
			req := httptest.NewRequest("GET", p, nil)
			req.URL.RawQuery = query
			req.Header.Set("Authorization", "Bearer "+token)
			rec := serve(b, req)
			checkAnswer(t, rec, p+"?"+query)
			if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
				t.Fatalf("%s?%s: status %d: %s", p, query, rec.Code, rec.Body)
			}
		}
	})
}

// FuzzMultipart uploads any multipart body under any Content-Type
// parameters: a 202 or a 4xx problem, never a 5xx, whatever the
// boundary, the part headers or the framing.
func FuzzMultipart(f *testing.F) {
	img := smallPNG(f)
	form := func(parts ...[2]string) (string, []byte) {
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		for _, p := range parts {
			pw, err := w.CreateFormFile(p[0], "a.png")
			if err != nil {
				f.Fatal(err)
			}
			_, _ = pw.Write([]byte(p[1]))
		}
		_ = w.Close()
		return "boundary=" + w.Boundary(), buf.Bytes()
	}
	add := func(parts ...[2]string) { params, body := form(parts...); f.Add(params, body) }
	add([2]string{"file", string(img)})
	add([2]string{"other", "x"}, [2]string{"file", string(img)})
	add([2]string{"file", ""})
	add([2]string{"file", "not an image"})
	add([2]string{"file", string(img[:40])})
	add([2]string{"other", "x"})
	add()
	params, body := form([2]string{"file", string(img)})
	f.Add(params, body[:len(body)/2])
	f.Add(params, bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")))
	f.Add(`boundary="a b"`, []byte("--a b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nGIF89a\r\n--a b--\r\n"))
	f.Add("boundary=", []byte("--\r\n\r\n--"))
	f.Add("", []byte("x"))
	f.Add("boundary=x; boundary=y", []byte("--x\r\n"))
	f.Add("boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=other\r\n\r\nx\r\n--x\r\nno colon\r\n\r\n--x--\r\n"))
	f.Add("boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=file; filename*=UTF-8''%ZZ\r\n\r\n\xff\xd8\xff\r\n--x--"))
	b := newBundle(f, func(s *setup) { s.noWorkers = true; s.opts.MaxUploadBytes = 1 << 20 })
	_, token := b.signup("fuzzmulti")
	f.Fuzz(func(t *testing.T, params string, body []byte) {
		req := httptest.NewRequest("POST", "/v1/photos", bytes.NewReader(body))
		req.Header.Set("Content-Type", "multipart/form-data; "+params)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := serve(b, req)
		input := fmt.Sprintf("%s|%q", params, body)
		checkAnswer(t, rec, input)
		if rec.Code != http.StatusAccepted && (rec.Code < 400 || rec.Code >= 500) {
			t.Fatalf("%s: status %d", input, rec.Code)
		}
	})
}
