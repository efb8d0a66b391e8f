package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onebox/internal/testimages"
)

// underLoad is one user's reads, edits and uploads sent to a child in a loop
// each, while a test breaks something under it. Every answer must be a
// success or a proper refusal (503 problem+json with Retry-After).
type underLoad struct {
	t         *testing.T
	stop      context.CancelFunc
	wg        sync.WaitGroup
	mu        sync.Mutex
	accepted  []string // ids of the uploads answered 202
	bad       []string // answers that are neither a success nor a proper 503
	refused   atomic.Int64
	succeeded atomic.Int64
}

// startLoad starts the loops as token's user.
func startLoad(t *testing.T, c *child, token string) *underLoad {
	t.Helper()
	jpeg, err := testimages.PhotoJPEG(320, 240, 1, 85)
	if err != nil {
		t.Fatal(err)
	}
	var form bytes.Buffer
	w := multipart.NewWriter(&form)
	fw, _ := w.CreateFormFile("file", "photo.jpg")
	fw.Write(jpeg)
	w.Close()
	ctx, stop := context.WithCancel(t.Context())
	l := &underLoad{t: t, stop: stop}
	requests := []func() (string, *http.Response, []byte, error){
		func() (string, *http.Response, []byte, error) {
			res, body, err := c.send("GET", "/v1/users/me", token, "", nil)
			return "GET /v1/users/me", res, body, err
		},
		func() (string, *http.Response, []byte, error) {
			res, body, err := c.send("PATCH", "/v1/users/me", token, "application/json", []byte(`{"bio":"under load"}`))
			return "PATCH /v1/users/me", res, body, err
		},
		func() (string, *http.Response, []byte, error) {
			res, body, err := c.send("POST", "/v1/photos", token, w.FormDataContentType(), form.Bytes())
			if err == nil && res.StatusCode == http.StatusAccepted {
				var p struct{ ID string }
				_ = json.Unmarshal(body, &p)
				l.mu.Lock()
				l.accepted = append(l.accepted, p.ID)
				l.mu.Unlock()
			}
			return "POST /v1/photos", res, body, err
		},
	}
	for _, req := range requests {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				what, res, body, err := req()
				switch {
				case err != nil:
					l.fail(fmt.Sprintf("%s: %v", what, err))
				case res.StatusCode < 300:
					l.succeeded.Add(1)
				case res.StatusCode == http.StatusServiceUnavailable && res.Header.Get("Retry-After") != "" &&
					res.Header.Get("Content-Type") == "application/problem+json":
					l.refused.Add(1)
				default:
					l.fail(fmt.Sprintf("%s: %d %s", what, res.StatusCode, body))
				}
			}
		})
	}
	return l
}

func (l *underLoad) fail(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bad = append(l.bad, s)
}

// waitFor waits until n more requests than now have had the answer
// counted by counter.
func (l *underLoad) waitFor(what string, counter *atomic.Int64, n int64) {
	l.t.Helper()
	want := counter.Load() + n
	for deadline := time.Now().Add(time.Minute); counter.Load() < want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			l.stop()
			l.wg.Wait()
			l.t.Fatalf("%s: waited for %d, got %d; bad answers %v", what, want, counter.Load(), l.bad[:min(len(l.bad), 10)])
		}
	}
}

// uploads returns how many uploads have been accepted so far.
func (l *underLoad) uploads() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

// finish stops the loops, fails the test on any bad answer or when no
// upload was accepted, and returns the ids of the accepted uploads.
func (l *underLoad) finish() []string {
	l.t.Helper()
	l.stop()
	l.wg.Wait()
	if len(l.bad) > 0 {
		l.t.Fatalf("%d answers were neither a success nor 503 problem+json with Retry-After: %v", len(l.bad), l.bad[:min(len(l.bad), 10)])
	}
	if len(l.accepted) == 0 {
		l.t.Fatal("no upload was accepted")
	}
	l.t.Logf("%d successes, %d refusals (503), %d uploads accepted", l.succeeded.Load(), l.refused.Load(), len(l.accepted))
	return l.accepted
}
