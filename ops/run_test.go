package ops_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"onebox/ops"
)

// TestRunDrainsInOrder walks the shutdown sequence of a deploy: readiness
// fails at once, new requests are still served during the delay, and an
// in-flight request finishes before Run returns.
func TestRunDrainsInOrder(t *testing.T) {
	t.Parallel()
	health := ops.NewHealth()
	release := make(chan struct{})
	entered := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "done")
	})
	mux.HandleFunc("/fast", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()

	inDelay := make(chan struct{})
	endDelay := make(chan struct{})
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() {
		ran <- ops.Run(ctx, []ops.Server{{Name: "test", Listener: ln, Server: &http.Server{Handler: mux}}}, ops.RunOptions{
			Health: health, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			ShutdownDelay: time.Hour, DrainTimeout: time.Minute,
			Sleep: func(context.Context, time.Duration) { close(inDelay); <-endDelay },
		})
	}()

	slow := make(chan string, 1)
	go func() {
		res, err := http.Get(base + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		slow <- string(b)
	}()
	<-entered
	if ok, _ := health.Ready(context.Background()); !ok {
		t.Fatal("not ready before the signal")
	}
	stop() // SIGTERM
	<-inDelay
	if ok, rep := health.Ready(context.Background()); ok || rep.Status != "draining" {
		t.Fatalf("during the delay: ready=%v %+v", ok, rep)
	}
	// New connections are still accepted while the balancer catches up.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Get(base + "/fast")
	if err != nil {
		t.Fatalf("request during the shutdown delay: %v", err)
	}
	res.Body.Close()
	// And each answer ends its connection, so no client reuses one that
	// the drain will close under it (asked by a client that keeps them).
	ka := &http.Client{Transport: &http.Transport{}}
	if res, err = ka.Get(base + "/fast"); err != nil {
		t.Fatalf("request during the shutdown delay: %v", err)
	}
	res.Body.Close()
	if !res.Close {
		t.Fatalf("answer during the shutdown delay keeps its connection: %v", res.Header)
	}
	close(endDelay)

	select {
	case err := <-ran:
		t.Fatalf("Run returned (%v) with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if got := <-slow; got != "done" {
		t.Fatalf("in-flight request: %q", got)
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := c.Get(base + "/fast"); err == nil {
		t.Fatal("still accepting after the drain")
	}
}

// TestRunHandedOver drains a process whose replacement accepts on the
// same listening socket (as package handover passes it on): the old
// process stops accepting before its shutdown delay, not after it. A
// connection it accepted at the end of the delay would have its request
// read after Shutdown began, and net/http closes such a connection
// unanswered: an EOF on a fresh connection, which no client retries.
// Its keep-alive connections from before are still answered.
func TestRunHandedOver(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The replacement's end of the same socket, as it inherits it.
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	next, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	answer := func(who string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, who) })
	}
	get := func(c *http.Client) (string, bool) {
		t.Helper()
		res, err := c.Get(base)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b), res.Close
	}

	old := &watchedListener{Listener: ln}
	handedOver := make(chan struct{})
	inDelay := make(chan struct{})
	endDelay := make(chan struct{})
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() {
		ran <- ops.Run(ctx, []ops.Server{{Name: "old", Listener: old, Server: &http.Server{Handler: answer("old")}}}, ops.RunOptions{
			Health: ops.NewHealth(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			ShutdownDelay: time.Hour, DrainTimeout: time.Minute, HandedOver: handedOver,
			Sleep: func(context.Context, time.Duration) { close(inDelay); <-endDelay },
		})
	}()
	ka := &http.Client{Transport: &http.Transport{}}
	if who, _ := get(ka); who != "old" {
		t.Fatalf("before the hand-over: answered by %q", who)
	}

	close(handedOver) // the replacement is ready ...
	stop()            // ... and this process is told to drain
	<-inDelay
	if !old.closed.Load() {
		t.Fatal("the old process still accepts in its shutdown delay after a hand-over")
	}
	srv := &http.Server{Handler: answer("new")}
	go srv.Serve(next)
	defer srv.Close()
	if who, _ := get(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}); who != "new" {
		t.Fatalf("a new connection in the delay: answered by %q, want the replacement", who)
	}
	if who, closed := get(ka); who != "old" || !closed {
		t.Fatalf("the old keep-alive connection in the delay: answered by %q, closing it %v; want the old process, closing it", who, closed)
	}
	close(endDelay)
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// watchedListener reports whether it was closed, and when.
type watchedListener struct {
	net.Listener
	closed atomic.Bool
	at     atomic.Int64 // Unix ns of the first Close
}

func (l *watchedListener) Close() error {
	if !l.closed.Swap(true) {
		l.at.Store(time.Now().UnixNano())
	}
	return l.Listener.Close()
}

func (l *watchedListener) closedAt() time.Time { return time.Unix(0, l.at.Load()) }

func TestRunDrainTimeout(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	defer close(block)
	entered := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-block
	})}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() {
		ran <- ops.Run(ctx, []ops.Server{{Name: "stuck", Listener: ln, Server: srv}}, ops.RunOptions{
			Health: ops.NewHealth(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DrainTimeout: 10 * time.Millisecond,
		})
	}()
	go http.Get("http://" + ln.Addr().String())
	<-entered
	stop()
	if err := <-ran; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want the drain deadline", err)
	}
}

func TestReadyReportsFailingCheck(t *testing.T) {
	t.Parallel()
	h := ops.NewHealth(
		ops.Check{Name: "database", Probe: func(context.Context) error { return nil }},
		ops.Check{Name: "cache", Timeout: 10 * time.Millisecond, Probe: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
	)
	ok, rep := h.Ready(context.Background())
	if ok || rep.Status != "unready" || rep.Checks["database"] != "ok" || rep.Checks["cache"] != context.DeadlineExceeded.Error() {
		t.Fatalf("ready=%v %+v", ok, rep)
	}
}

// TestRunAnswersAcceptedConnections: a balancer that connected just before
// the listener closed sends its request a moment later; net/http's
// Shutdown would drop it unanswered (a POST nginx will not resend), so
// Run closes the listeners, then waits for every accepted connection's
// first request before shutting down.
func TestRunAnswersAcceptedConnections(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	watched := &watchedListener{Listener: ln}
	accepted := make(chan struct{}, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "answered") }),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				accepted <- struct{}{}
			}
		},
	}
	endDelay := make(chan struct{})
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() {
		ran <- ops.Run(ctx, []ops.Server{{Name: "api", Listener: watched, Server: srv}}, ops.RunOptions{
			Health: ops.NewHealth(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			ShutdownDelay: time.Hour, DrainTimeout: time.Minute, AcceptGrace: time.Minute,
			Sleep: func(context.Context, time.Duration) { <-endDelay },
		})
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	<-accepted
	stop()
	close(endDelay)
	// The listener closes (before Shutdown, or, without the wait, by it,
	// after the server began shutting down); only then the request.
	for !watched.closed.Load() {
		time.Sleep(time.Millisecond)
	}
	if _, err := io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(conn)
	if !strings.HasPrefix(string(got), "HTTP/1.1 200") || !strings.HasSuffix(string(got), "answered") {
		t.Errorf("a request on a connection accepted before the drain: %q, %v; want it answered", got, err)
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestRunClosesWhenQuiet: closing a listener resets the connections in
// its accept queue, on which a balancer may have sent a POST it will not
// resend. So after the delay Run keeps its listeners while connections
// arrive, refuses what nginx would resend elsewhere (a GET: 503, so nginx
// marks the instance failed and stops connecting), serves what it would
// not (a POST), and closes once no connection came for Quiet, or after
// QuietMax.
func TestRunClosesWhenQuiet(t *testing.T) {
	t.Parallel()
	const quiet = 300 * time.Millisecond
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	send := func(t *testing.T, method, url string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader("{}"))
		res, err := fresh.Do(req)
		if err != nil {
			t.Fatalf("%s during the quiet wait: %v", method, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}

	t.Run("refuses what nginx resends, serves the rest, closes when quiet", func(t *testing.T) {
		t.Parallel()
		r := startQuietRun(t, quiet, time.Minute)
		send(t, "GET", r.base) // a connection in the delay, so the quiet has to come
		close(r.endDelay)
		res, body := send(t, "GET", r.base)
		if res.StatusCode != http.StatusServiceUnavailable || !res.Close || res.Header.Get("Retry-After") != "1" ||
			res.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, "/problems/stopping") {
			t.Errorf("a GET after the delay: %d close=%v %v %s; want a 503 problem with Retry-After that closes its connection", res.StatusCode, res.Close, res.Header, body)
		}
		for _, method := range []string{"POST", "PATCH"} {
			if res, body := send(t, method, r.base); res.StatusCode != http.StatusOK || body != "answered" {
				t.Errorf("a %s after the delay: %d %s; want it served (nginx sends it once)", method, res.StatusCode, body)
			}
		}
		if err := <-r.ran; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if gap := r.ln.closedAt().Sub(r.lastAccept()); gap < quiet {
			t.Errorf("the listener closed %v after the last connection arrived, want at least the quiet %v", gap, quiet)
		}
	})

	t.Run("closes after QuietMax while connections keep coming", func(t *testing.T) {
		t.Parallel()
		r := startQuietRun(t, quiet, 200*time.Millisecond)
		send(t, "GET", r.base) // the connections begin in the delay
		stopSending := make(chan struct{})
		defer close(stopSending)
		go func() {
			for {
				select {
				case <-stopSending:
					return
				case <-time.After(10 * time.Millisecond):
					if res, err := fresh.Get(r.base); err == nil {
						res.Body.Close()
					}
				}
			}
		}()
		close(r.endDelay)
		select {
		case err := <-r.ran:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("Run still waits for a quiet that never comes")
		}
	})
}

// quietRun is a Run told to stop, in its shutdown delay until endDelay
// is closed; its server answers "answered".
type quietRun struct {
	base     string
	ln       *watchedListener
	endDelay chan struct{}
	ran      chan error
	last     atomic.Int64 // Unix ns of the last connection accepted
}

func (r *quietRun) lastAccept() time.Time { return time.Unix(0, r.last.Load()) }

func startQuietRun(t *testing.T, quiet, quietMax time.Duration) *quietRun {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &quietRun{base: "http://" + l.Addr().String(), ln: &watchedListener{Listener: l}, endDelay: make(chan struct{}), ran: make(chan error, 1)}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "answered") }),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				r.last.Store(time.Now().UnixNano())
			}
		},
	}
	inDelay := make(chan struct{})
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		r.ran <- ops.Run(ctx, []ops.Server{{Name: "api", Listener: r.ln, Server: srv}}, ops.RunOptions{
			Health: ops.NewHealth(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			ShutdownDelay: time.Hour, DrainTimeout: time.Minute, Quiet: quiet, QuietMax: quietMax,
			Sleep: func(context.Context, time.Duration) { close(inDelay); <-r.endDelay },
		})
	}()
	stop()
	<-inDelay
	return r
}
