// Package drill is fault injection for game days: on demand from the
// admin listener, it makes every database call wait, for a bounded time,
// so operators can rehearse reading the dashboard while the process
// degrades the way a slow database would make it. It exists only when
// main wires it (ONEBOX_DRILLS=true); every drill ends by itself.
package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"onebox/jobs"
	"onebox/store"
)

// Options configure New. Zero fields take the defaults.
type Options struct {
	// MaxDelay bounds the latency one drill may add to a call. 30s.
	MaxDelay time.Duration
	// MaxFor bounds how long one drill may run. 1h.
	MaxFor time.Duration
	Logger *slog.Logger     // default: discard
	Now    func() time.Time // default time.Now
}

// Drill holds the faults being injected. It is safe for concurrent use.
type Drill struct {
	o   Options
	log *slog.Logger

	mu    sync.Mutex
	delay time.Duration
	until time.Time
	timer *time.Timer

	// The writer-hold drill (writer.go).
	holdQueue jobs.Producer
	holding   time.Duration
	holdUntil time.Time

	// The stuck-job drill (stuck.go): closing stuckRelease, nil when it
	// does not run, returns its handlers.
	stuckQueue   jobs.Producer
	stuckRelease chan struct{}
}

// New returns a Drill with nothing injected.
func New(o Options) *Drill {
	if o.MaxDelay <= 0 {
		o.MaxDelay = 30 * time.Second
	}
	if o.MaxFor <= 0 {
		o.MaxFor = time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Drill{o: o, log: o.Logger}
}

// StartDBLatency makes every database call wait delay first, for the
// next d (replacing a drill already running). Both must be positive and
// within MaxDelay and MaxFor.
func (dr *Drill) StartDBLatency(delay, d time.Duration) error {
	if delay <= 0 || delay > dr.o.MaxDelay {
		return fmt.Errorf("delay must be over 0 and at most %s", dr.o.MaxDelay)
	}
	if d <= 0 || d > dr.o.MaxFor {
		return fmt.Errorf("for must be over 0 and at most %s", dr.o.MaxFor)
	}
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.timer != nil {
		dr.timer.Stop()
	}
	dr.delay, dr.until = delay, dr.o.Now().Add(d)
	dr.timer = time.AfterFunc(d, func() { dr.stop("expired") })
	dr.log.Warn("drill started: database latency", "delay", delay.String(), "for", d.String())
	return nil
}

// StopDBLatency ends the database-latency drill; false if none ran.
func (dr *Drill) StopDBLatency() bool { return dr.stop("stopped") }

func (dr *Drill) stop(why string) bool {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.delay == 0 {
		return false
	}
	if dr.timer != nil {
		dr.timer.Stop()
		dr.timer = nil
	}
	dr.log.Warn("drill "+why+": database latency", "delay", dr.delay.String())
	dr.delay, dr.until = 0, time.Time{}
	return true
}

// dbDelay is the latency to add to a database call now.
func (dr *Drill) dbDelay() time.Duration {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.delay > 0 && !dr.o.Now().Before(dr.until) {
		return 0 // the timer is about to clear it
	}
	return dr.delay
}

// Active describes the drills running now, for the dashboard.
func (dr *Drill) Active() []string {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	var out []string
	if dr.delay != 0 {
		out = append(out, fmt.Sprintf("database latency +%s on every call, until %s", dr.delay, dr.until.Format("15:04:05")))
	}
	if dr.holding != 0 {
		out = append(out, fmt.Sprintf("job %s holds the database writer for %s, until %s", KindHoldWriter, dr.holding, dr.holdUntil.Format("15:04:05")))
	}
	if dr.stuckRelease != nil {
		out = append(out, fmt.Sprintf("jobs %s ignore their context past their %s timeout (DELETE /ops/drill/stuck-job ends them)", KindStuck, StuckTimeout))
	}
	return out
}

// ServeHTTP is the drills' admin API:
//
//	POST   /ops/drill/db-latency?delay=500ms&for=60s   start (for defaults to 1m)
//	DELETE /ops/drill/db-latency                       stop
//	GET    /ops/drill/db-latency                       what runs
//	POST   /ops/drill/writer-hold?for=5s               a job holds the SQLite writer
//	POST   /ops/drill/stuck-job?for=30s&count=3        jobs ignore their context
//	DELETE /ops/drill/stuck-job                        stop them
func (dr *Drill) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/ops/drill/writer-hold":
		dr.serveHoldWriter(w, r)
		return
	case "/ops/drill/stuck-job":
		dr.serveStuckJobs(w, r)
		return
	case "/ops/drill/db-latency":
	default:
		reply(w, http.StatusNotFound, map[string]string{"error": "no such drill; there are /ops/drill/db-latency, /ops/drill/writer-hold and /ops/drill/stuck-job"})
		return
	}
	switch r.Method {
	case http.MethodPost:
		q := r.URL.Query()
		delay, err := time.ParseDuration(q.Get("delay"))
		if err != nil {
			reply(w, http.StatusBadRequest, map[string]string{"error": "delay: want a duration such as 500ms"})
			return
		}
		d := time.Minute
		if v := q.Get("for"); v != "" {
			if d, err = time.ParseDuration(v); err != nil {
				reply(w, http.StatusBadRequest, map[string]string{"error": "for: want a duration such as 60s"})
				return
			}
		}
		if err := dr.StartDBLatency(delay, d); err != nil {
			reply(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		reply(w, http.StatusOK, map[string]any{"active": dr.Active()})
	case http.MethodDelete:
		reply(w, http.StatusOK, map[string]any{"stopped": dr.StopDBLatency()})
	case http.MethodGet, http.MethodHead:
		reply(w, http.StatusOK, map[string]any{"active": dr.Active()})
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		reply(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST to start, DELETE to stop"})
	}
}

// errQueue marks a job drill's start that failed in the queue, not in
// the request: the operator may retry it.
var errQueue = errors.New("the queue did not take the drill's job")

// replyStartErr answers a job drill that did not start: 503 when the
// queue failed, 400 for what the request asked.
func replyStartErr(w http.ResponseWriter, err error) {
	status := http.StatusBadRequest
	if errors.Is(err, errQueue) {
		status = http.StatusServiceUnavailable
	}
	reply(w, status, map[string]string{"error": err.Error()})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// injected is the latency a call waited, carried in its context until
// the first query of the call reports it.
type injected struct{ d atomic.Int64 }

type injectedKey struct{}

// wait sleeps the database latency, if a drill runs, or until ctx ends.
// The context it returns carries what was slept, for ObserveQueries.
func (dr *Drill) wait(ctx context.Context) (context.Context, error) {
	delay := dr.dbDelay()
	if delay <= 0 {
		return ctx, nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx, fmt.Errorf("drill: database latency: %w", ctx.Err())
	}
	in := &injected{}
	in.d.Store(int64(delay))
	return context.WithValue(ctx, injectedKey{}, in), nil
}

// ObserveQueries wraps a store's query hook (sqlite.Options.OnQuery) so
// the first query of a delayed call reports the injected latency as part
// of its duration: the query metrics and the slow-query log then see the
// drill as they would see a slow database. A nil Drill or hook returns
// the hook as it is.
func (dr *Drill) ObserveQueries(next func(context.Context, store.QueryEvent)) func(context.Context, store.QueryEvent) {
	if dr == nil || next == nil {
		return next
	}
	return func(ctx context.Context, ev store.QueryEvent) {
		if in, ok := ctx.Value(injectedKey{}).(*injected); ok {
			ev.Duration += time.Duration(in.d.Swap(0))
		}
		next(ctx, ev)
	}
}
