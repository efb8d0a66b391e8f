package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server is one listener and what it serves.
type Server struct {
	Name     string
	Listener net.Listener
	Server   *http.Server
}

// RunOptions configure Run.
type RunOptions struct {
	Health *Health
	Logger *slog.Logger
	// ShutdownDelay keeps serving after the stop signal while readiness
	// answers 503, so a load balancer that polls it stops sending traffic.
	ShutdownDelay time.Duration
	// DrainTimeout bounds how long in-flight requests may take to finish.
	DrainTimeout time.Duration
	// Sleep waits for d or ctx; tests may shorten it. Default: a timer.
	Sleep func(ctx context.Context, d time.Duration)
	// HandedOver, if set, is closed when a replacement process that
	// shares the listening sockets is ready (see package handover). If it
	// is closed when the drain starts, Run stops accepting at once rather
	// than after ShutdownDelay: the replacement takes every connection
	// from then on, and the connections this process took before get the
	// whole delay to send their request. Accepting on would be worse than
	// useless: net/http's Shutdown closes, unanswered, a connection whose
	// first request it reads after the shutdown began, and a client
	// retries nothing on a fresh connection.
	HandedOver <-chan struct{}
	// AcceptGrace bounds how long, once the listeners are closed, Run
	// waits for connections it accepted to send their first request
	// before Shutdown (see Run). Default: 1s.
	AcceptGrace time.Duration
	// Quiet: once the delay is over, the listeners close only when no
	// connection arrived for Quiet (default 100ms), or QuietMax (default
	// 2s) after the delay (see Run).
	Quiet, QuietMax time.Duration
}

// Run serves until ctx is done, then shuts down in the order a
// zero-downtime deploy needs: readiness turns 503 at once, serving goes on
// for ShutdownDelay (each answer now closes its connection), then
// listeners close and in-flight requests get DrainTimeout to finish (idle
// keep-alive connections are closed). After a hand-over the listeners
// close first, before the delay (see HandedOver). Between the listeners
// closing and Shutdown, Run waits (up to AcceptGrace) for every
// connection it accepted to start its first request: net/http's Shutdown
// drops, unanswered, a request it reads after the shutdown began, and a
// balancer that connected just before the listener closed (nginx keeps
// sending to a draining instance until a connect fails) would lose one
// it will not resend.
//
// Closing a listening socket resets the connections still in its accept
// queue: a balancer that connected a moment before has sent a request on
// one and sees it reset, and nginx resends no POST or PATCH it sent. So
// after the delay (unless handed over) Run closes the listeners only
// once no connection arrived for Quiet, at most QuietMax, and meanwhile
// answers 503 + Connection: close to every request nginx would resend
// to another server (all methods but POST, PATCH and LOCK): nginx counts
// those as failures and, after max_fails of them, connects here no more,
// so the quiet comes. The requests nginx would not resend are served.
// A balancer that polls readiness stopped sending during the delay, and
// the listeners close at once. A listener that fails on its own ends Run
// with its error, after the same drain of the others.
func Run(ctx context.Context, servers []Server, o RunOptions) error {
	if o.Sleep == nil {
		o.Sleep = func(ctx context.Context, d time.Duration) {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
	}
	if o.AcceptGrace <= 0 {
		o.AcceptGrace = time.Second
	}
	if o.Quiet <= 0 {
		o.Quiet = 100 * time.Millisecond
	}
	if o.QuietMax <= 0 {
		o.QuietMax = 2 * time.Second
	}
	failed := make(chan error, len(servers))
	lns := make([]*closeOnce, len(servers))
	fresh := newFreshConns()
	var closing atomic.Bool // the delay is over: waiting for quiet
	for i, s := range servers {
		fresh.track(s.Server)
		s.Server.Handler = closeWhenDraining(s.Server.Handler, o.Health, fresh, &closing)
		lns[i] = &closeOnce{Listener: s.Listener}
	}
	for i, s := range servers {
		go func() {
			o.Logger.Info("listening", "server", s.Name, "addr", s.Listener.Addr().String())
			// After a hand-over closed the listener this is net.ErrClosed,
			// sent to no one: nothing reads failed once the drain began.
			if err := s.Server.Serve(lns[i]); !errors.Is(err, http.ErrServerClosed) {
				failed <- fmt.Errorf("%s server: %w", s.Name, err)
			}
		}()
	}
	var cause error
	select {
	case <-ctx.Done():
	case cause = <-failed:
		o.Logger.Error("server failed", "err", cause)
	}

	o.Health.Drain()
	handedOver := false
	select {
	case <-o.HandedOver:
		handedOver = true
		for _, ln := range lns {
			_ = ln.Close() // its socket stays open in the replacement
		}
	default:
	}
	o.Logger.Info("draining", "shutdown_delay", o.ShutdownDelay.String(), "drain_timeout", o.DrainTimeout.String(), "handed_over", handedOver)
	if cause == nil && o.ShutdownDelay > 0 {
		// A second signal should not cut the delay short: the process
		// manager's kill timeout is the real bound. Use a fresh context.
		o.Sleep(context.Background(), o.ShutdownDelay)
	}
	if !handedOver {
		closing.Store(true)
		if !fresh.quiet(o.Quiet, o.QuietMax) {
			o.Logger.Warn("connections kept arriving; closing the listeners anyway", "quiet", o.Quiet.String(), "quiet_max", o.QuietMax.String())
		}
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	if !fresh.wait(o.AcceptGrace) {
		o.Logger.Warn("connections sent no request within the grace; closing them", "accept_grace", o.AcceptGrace.String())
	}
	dctx, cancel := context.WithTimeout(context.Background(), o.DrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, s := range servers {
		wg.Go(func() {
			if err := s.Server.Shutdown(dctx); err != nil {
				errs[i] = fmt.Errorf("%s server: drain: %w", s.Name, err)
				_ = s.Server.Close()
			}
		})
	}
	wg.Wait()
	o.Logger.Info("drained")
	return errors.Join(append(errs, cause)...)
}

// closeWhenDraining answers with Connection: close once h is draining,
// so a keep-alive connection ends right after an answer, when its client
// knows not to reuse it. Without it, Shutdown closes the connections
// idle at that moment, and a request a client sends on one just then is
// lost (an EOF, which a client may retry only for a GET or a request
// with an Idempotency-Key). In a hand-over the clients' next connections
// reach the new process; give ShutdownDelay a second or two for busy
// connections to turn over. Once closing (see Run), it refuses the
// requests a balancer would send to another server.
func closeWhenDraining(next http.Handler, h *Health, fresh *freshConns, closing *atomic.Bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fresh.started(r.Context())
		if h.Draining() {
			w.Header().Set("Connection", "close")
		}
		if closing.Load() && resent(r.Method) {
			w.Header().Set("Retry-After", "1")
			WriteProblem(w, http.StatusServiceUnavailable, "stopping", "this instance is stopping; send the request again")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// resent reports whether nginx passes a request with this method to the
// next server after a 503 (proxy_next_upstream http_503): all but the
// non-idempotent ones, which it sends once.
func resent(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPatch, "LOCK":
		return false
	}
	return true
}

// freshConns counts the connections accepted that have not yet started a
// request: those Shutdown would drop, unanswered, if their request came
// after it began; and when the last connection arrived (quiet).
type freshConns struct {
	arrived atomic.Int64 // when the last connection was accepted, in Unix ns

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	empty chan struct{} // closed and replaced when conns empties
}

func newFreshConns() *freshConns {
	return &freshConns{conns: map[net.Conn]struct{}{}, empty: make(chan struct{})}
}

type freshKey struct{}

// track hooks s: ConnState adds a new connection and drops a closed or
// hijacked one; ConnContext marks each connection so that its first
// request, on starting (started, called by Run's handler), drops it.
// Hooks s already has still run.
func (f *freshConns) track(s *http.Server) {
	state, connCtx := s.ConnState, s.ConnContext
	s.ConnState = func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			f.arrived.Store(time.Now().UnixNano())
			f.mu.Lock()
			f.conns[c] = struct{}{}
			f.mu.Unlock()
		case http.StateClosed, http.StateHijacked:
			f.drop(c)
		}
		if state != nil {
			state(c, st)
		}
	}
	s.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if connCtx != nil {
			ctx = connCtx(ctx, c)
		}
		return context.WithValue(ctx, freshKey{}, &freshConn{Conn: c})
	}
}

// freshConn marks a connection in its context; started tells whether
// one of its requests began, so only the first takes freshConns' lock.
type freshConn struct {
	net.Conn
	started atomic.Bool
}

// started drops the connection of a request that starts, if it was
// still waiting for its first.
func (f *freshConns) started(ctx context.Context) {
	if c, ok := ctx.Value(freshKey{}).(*freshConn); ok && !c.started.Swap(true) {
		f.drop(c.Conn)
	}
}

func (f *freshConns) drop(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.conns[c]; !ok {
		return
	}
	delete(f.conns, c)
	if len(f.conns) == 0 {
		close(f.empty)
		f.empty = make(chan struct{})
	}
}

// wait returns once no accepted connection waits for its first request,
// true, or after grace, false.
func (f *freshConns) wait(grace time.Duration) bool {
	f.mu.Lock()
	if len(f.conns) == 0 {
		f.mu.Unlock()
		return true
	}
	empty := f.empty
	f.mu.Unlock()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-empty:
		return true
	case <-t.C:
		return false
	}
}

// quiet returns once no connection was accepted for q, true, or after
// max, false.
func (f *freshConns) quiet(q, max time.Duration) bool {
	deadline := time.Now().Add(max)
	for {
		since := time.Since(time.Unix(0, f.arrived.Load()))
		if since >= q {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(q-since, left))
	}
}

// closeOnce is a listener that Run may close before the server's
// Shutdown does: if Serve has not returned by then (no delay), Shutdown
// closes it again and would report that close's error as a failed drain.
type closeOnce struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *closeOnce) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}
