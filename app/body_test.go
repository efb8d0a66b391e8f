package app_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"io/fs"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"onebox/store"
)

// conn is a raw client connection to a test server, for requests no
// well-behaved client sends: a body that never comes, or comes too slowly.
type conn struct {
	t *testing.T
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, serverURL string) *conn {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The bound on a hang: a server that never answers fails the test
	// here instead of holding it.
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	return &conn{t: t, Conn: c, r: bufio.NewReader(c)}
}

// send writes raw bytes: a request head ("\r\n" line ends) and as much
// of its body as the test wants to send.
func (c *conn) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.Conn, raw); err != nil {
		c.t.Fatal(err)
	}
}

// read reads the next answer, to a request of method for path.
func (c *conn) read(method, path string) response {
	c.t.Helper()
	res, err := http.ReadResponse(c.r, &http.Request{Method: method, URL: &url.URL{Path: path}})
	if err != nil {
		c.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading the answer's body: %v", method, path, err)
	}
	return response{res, body}
}

// A request that declares a body and does not send it all within the
// body deadline gets a 408 problem and the connection is closed: whether
// its handler reads bodies or not, on the public and the admin listener.
func TestBodyThatNeverComesIs408(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) { s.opts.BodyTimeout = 100 * time.Millisecond })
	admin := httptest.NewServer(b.admin)
	t.Cleanup(admin.Close)
	for _, tc := range []struct {
		name, server, method, path, sent string
	}{
		{"live, nothing sent", b.url, "GET", "/health/live", ""},
		{"live, half sent", b.url, "GET", "/health/live", strings.Repeat("x", 50)},
		{"login", b.url, "POST", "/v1/sessions", `{"handle":"al`},
		{"unmatched route", b.url, "POST", "/nowhere", ""},
		{"admin job retry", admin.URL, "POST", "/jobs/retry", ""},
		{"admin health", admin.URL, "GET", "/health/live", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, tc.server)
			c.send(tc.method + " " + tc.path + " HTTP/1.1\r\nHost: onebox\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n" + tc.sent)
			r := c.read(tc.method, tc.path)
			mustProblem(t, r, http.StatusRequestTimeout, "")
			if !r.Close {
				t.Error("the connection stays open with the rest of a body on it")
			}
		})
	}
}

// A client waiting to send its body is a request being served: it counts
// in onebox_http_in_flight_requests until it ends.
func TestBodyWaitCountsInFlight(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) { s.metrics = true; s.opts.BodyTimeout = time.Hour })
	inFlight := func() string { return sample(b.scrape(t), "onebox_http_in_flight_requests") }
	c := dial(t, b.url)
	c.send("GET /health/live HTTP/1.1\r\nHost: onebox\r\nContent-Length: 100\r\n\r\n")
	waitFor(t, func() bool { return inFlight() == "1" })
	c.Close()
	waitFor(t, func() bool { return inFlight() == "0" })
}

// A body larger than the limit is refused before the handler, whether it
// reads bodies or not, declared or not, and at once: the rest of it is
// not waited for.
func TestBodyTooLargeIs413(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) { s.opts.BodyTimeout = time.Hour }) // MaxBodyBytes 4096
	big := strings.Repeat("x", 5000)
	for _, tc := range []struct{ name, head, body string }{
		{"declared", "Content-Length: 5000\r\n", big},
		{"declared, never sent", "Content-Length: 5000\r\n", ""},
		{"chunked, the rest never sent", "Transfer-Encoding: chunked\r\n", strconv.FormatInt(int64(len(big)), 16) + "\r\n" + big},
		{"chunked", "Transfer-Encoding: chunked\r\n", strconv.FormatInt(int64(len(big)), 16) + "\r\n" + big + "\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, b.url)
			c.send("GET /health/live HTTP/1.1\r\nHost: onebox\r\n" + tc.head + "\r\n" + tc.body)
			mustProblem(t, c.read("GET", "/health/live"), http.StatusRequestEntityTooLarge, "")
		})
	}
}

// slowSignUp makes CreateUser take d, unless its context ends first.
type slowSignUp struct {
	store.Store
	d time.Duration
}

func (s slowSignUp) CreateUser(ctx context.Context, p store.CreateUserParams) (store.User, error) {
	select {
	case <-ctx.Done():
		return store.User{}, ctx.Err()
	case <-time.After(s.d):
	}
	return s.Store.CreateUser(ctx, p)
}

// The body deadline bounds the client, not the handler: a request whose
// body came in time is not cut off when its handler outlasts the
// deadline.
func TestBodyDeadlineEndsWithTheBody(t *testing.T) {
	t.Parallel()
	const deadline = 50 * time.Millisecond
	b := newBundle(t, func(s *setup) {
		s.opts.BodyTimeout = deadline
		s.wrapStore = func(st store.Store) store.Store { return slowSignUp{st, 10 * deadline} }
	})
	mustStatus(t, b.do("POST", "/v1/users", `{"handle":"patient","password":"correct horse"}`), http.StatusCreated)
}

// An event stream lasts past the body deadline, with or without a body.
func TestStreamOutlivesBodyDeadline(t *testing.T) {
	t.Parallel()
	const deadline = 50 * time.Millisecond
	b := newBundle(t, func(s *setup) { s.opts.BodyTimeout = deadline })
	_, token := b.signup("watcher")
	for _, body := range []string{"", "{}"} {
		t.Run("body "+strconv.Quote(body), func(t *testing.T) {
			c := dial(t, b.url)
			c.send("GET /v1/users/me/events HTTP/1.1\r\nHost: onebox\r\nAuthorization: Bearer " + token +
				"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
			res, err := http.ReadResponse(c.r, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close() // not res.Body.Close, which would read the stream to its end
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}
			lines := bufio.NewScanner(res.Body)
			if !lines.Scan() || !strings.HasPrefix(lines.Text(), "retry:") {
				t.Fatalf("first line %q, %v", lines.Text(), lines.Err())
			}
			// Let the deadline pass, well past, with the stream open: the
			// condition here is time itself.
			time.Sleep(10 * deadline)
			mustStatus(t, b.uploadBytes(token, smallPNG(t), false), http.StatusAccepted)
			for lines.Scan() {
				if lines.Text() == "event: photo" {
					return
				}
			}
			t.Fatalf("the stream ended before the upload's event: %v", lines.Err())
		})
	}
}

// An upload whose body is still coming at ONEBOX_UPLOAD_TIMEOUT is a 408
// problem wherever the handler was (reading the multipart framing, the
// image header, or writing the file to storage), leaves no file, and is
// not a server error in the metrics or the log.
func TestSlowUploadIs408(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) {
		s.metrics = true
		s.opts.UploadTimeout = 500 * time.Millisecond
		s.opts.BodyTimeout = time.Hour // not the deadline that ends an upload
	})
	_, token := b.signup("snail")
	img := smallPNG(t)
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "slow.png")
	fw.Write(img)
	mw.Close()
	cases := []struct {
		name, contentType string
		body              []byte
		sent              int // bytes sent before the client stalls
	}{
		// Was 400: the multipart part's header never ends.
		{"multipart framing", mw.FormDataContentType(), form.Bytes(), 20},
		// Was 422 "the image header could not be read".
		{"image header", "image/png", img, 12},
		// Was 500 "store original: … i/o timeout", the header read and
		// the file being written to storage.
		{"storing the file", "image/png", img, len(img) / 2},
	}
	t.Run("uploads", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				c := dial(t, b.url)
				c.send("POST /v1/photos HTTP/1.1\r\nHost: onebox\r\nAuthorization: Bearer " + token +
					"\r\nContent-Type: " + tc.contentType + "\r\nContent-Length: " + strconv.Itoa(len(tc.body)) + "\r\n\r\n" +
					string(tc.body[:tc.sent]))
				mustProblem(t, c.read("POST", "/v1/photos"), http.StatusRequestTimeout, "")
			})
		}
	})
	{ // after the uploads
		var left []string
		err := filepath.WalkDir(b.mediaDir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				left = append(left, p)
			}
			return err
		})
		if err != nil || len(left) > 0 {
			t.Errorf("media storage holds %v (%v)", left, err)
		}
		exp := b.scrape(t)
		series := `onebox_http_requests_total{route="/v1/photos",method="POST",code="%s"}`
		if n := sample(exp, strings.Replace(series, "%s", "4xx", 1)); n != strconv.Itoa(len(cases)) {
			t.Errorf("4xx uploads %q, want %d", n, len(cases))
		}
		if n := sample(exp, strings.Replace(series, "%s", "5xx", 1)); n != "" {
			t.Errorf("5xx uploads %s", n)
		}
		if logs := b.logs.String(); strings.Contains(logs, "request failed") {
			t.Errorf("a slow client logged as a failure:\n%s", logs)
		}
	}
}
