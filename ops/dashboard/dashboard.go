// Package dashboard is the operator's view of one onebox process: it
// samples the process's own Prometheus metrics every few seconds, keeps
// the last hour of them in memory, judges each component of the
// dependency chain (HTTP → limiter → cache → queue and workers →
// database → disk) healthy, degraded or failing, names the likely root
// cause of an incident, fires alerts, and serves all of it as one page
// and as JSON on the admin listener.
//
// It reads metrics only through Options.Scrape (the text a /metrics
// endpoint serves), parsed by the Prometheus project's expfmt, so it
// reads what a Prometheus server would, whatever registers them.
//
// Every quantile it shows states its source and window. Routes, queries
// and job kinds merge only in histograms: over VictoriaMetrics' vmrange
// buckets (13.6 % wide) a quantile is shown as its bucket's geometric
// middle, within 7 % of the truth; over buckets too wide for 10 %, as
// the bucket's range. A route's own p95 comes from its summary.
// Alerts on latency fire on an exact count, the share of requests
// slower than the threshold, not on a quantile estimate.
package dashboard

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"onebox/ops"
	"onebox/ops/advise"
)

// SlowQuery is one query the slow-query log kept.
type SlowQuery struct {
	Time      time.Time     `json:"time"`
	Name      string        `json:"name"`
	SQL       string        `json:"sql"`
	Duration  time.Duration `json:"duration"`
	Plan      string        `json:"plan,omitempty"` // EXPLAIN QUERY PLAN, one step a line
	RequestID string        `json:"request_id,omitempty"`
}

// Trace is one of the slowest recent requests or jobs, as a span tree.
type Trace struct {
	ID        string        `json:"id"`
	Name      string        `json:"name"` // the root span, e.g. "PATCH /v1/users/me"
	RequestID string        `json:"request_id,omitempty"`
	Start     time.Time     `json:"start"`
	Duration  time.Duration `json:"duration"`
	Spans     []Span        `json:"spans"` // depth-first, the root first
}

// Span is one node of a Trace. Depth is 0 for the root, 1 for its
// children and so on; Spans lists them depth-first so Depth alone gives
// the tree.
type Span struct {
	Name     string        `json:"name"`
	Offset   time.Duration `json:"offset"` // its start, after the trace's
	Duration time.Duration `json:"duration"`
	Depth    int           `json:"depth"`
	Error    string        `json:"error,omitempty"`
}

// ErrorEntry is one recent failed request or job.
type ErrorEntry struct {
	Time      time.Time `json:"time"`
	Where     string    `json:"where"` // route or job kind
	Status    int       `json:"status,omitempty"`
	Message   string    `json:"message"`
	RequestID string    `json:"request_id,omitempty"`
}

// Drill is fault injection the dashboard mounts under /ops/drill/ and
// reports while it runs, so nobody chases a fault someone injected.
type Drill interface {
	http.Handler
	// Active describes the drills running now, one sentence each.
	Active() []string
}

// Options configure New. Only Scrape is required.
type Options struct {
	// Scrape writes the process's metrics as Prometheus text exposition
	// (what its /metrics serves).
	Scrape func(w io.Writer) error
	// SlowQueries, SlowTraces and RecentErrors, when set, feed the lists
	// under the panels and the evidence of a diagnosis.
	SlowQueries  func() []SlowQuery
	SlowTraces   func() []Trace
	RecentErrors func() []ErrorEntry
	// Drill, when set, is served under /ops/drill/ and shown while active.
	Drill Drill
	// Dead, when set, feeds the dead-letter list (GET /ops/api/dead) and
	// its redrive (POST /ops/api/dead/redrive); OnRedrive, if set, is
	// called after jobs went back in the queue (to wake the workers).
	Dead      DeadLetters
	OnRedrive func()

	// Interval between samples. Default 5s.
	Interval time.Duration
	// Window is how much history the sparklines and baselines keep.
	// Default 1h.
	Window time.Duration
	// Recent is the span current values are computed over: request and
	// error rates, percentiles. Default 1m.
	Recent     time.Duration
	Thresholds Thresholds
	Alerts     AlertRules
	// Advice holds the scale-out advice's thresholds; zero fields take
	// advise.Defaults.
	Advice advise.Thresholds
	// SummaryWindow is the window of the per-route latency summaries
	// (metrics.Options.SummaryWindow), as the page states it. Default 5m.
	SummaryWindow time.Duration

	// Token, when set, is required (Authorization: Bearer, or ?token=)
	// on every request but the static files; without it, requests that
	// did not arrive on a loopback address are refused.
	Token string
	// Guard, if set, guards the dashboard instead of one made from Token:
	// pass the admin listener's, so every route there shares the budget
	// of failed authentications (ops.Guard).
	Guard *ops.Guard
	// Webhook, when set, receives every alert as JSON when it fires and
	// when it clears.
	Webhook string
	Client  *http.Client // for the webhook; default a 10s-timeout client

	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default: discard
}

// Dashboard samples metrics and serves the operator's page.
type Dashboard struct {
	o       Options
	log     *slog.Logger
	handler http.Handler

	mu      sync.RWMutex
	hist    *history
	states  map[string]componentState
	alerts  *alerter
	current State
}

type componentState struct {
	health Health
	since  time.Time
}

// New returns a Dashboard. It panics without Options.Scrape: a
// programmer error.
func New(o Options) *Dashboard {
	if o.Scrape == nil {
		panic("dashboard: New without Options.Scrape")
	}
	o.Interval = orDefault(o.Interval, 5*time.Second)
	o.Window = max(orDefault(o.Window, time.Hour), 2*o.Interval)
	o.Recent = min(max(orDefault(o.Recent, time.Minute), o.Interval), o.Window)
	o.Thresholds = o.Thresholds.withDefaults()
	o.SummaryWindow = orDefault(o.SummaryWindow, 5*time.Minute)
	o.Alerts = o.Alerts.withDefaults()
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Guard == nil {
		o.Guard = ops.NewGuard(ops.GuardOptions{Token: o.Token})
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	d := &Dashboard{
		o:      o,
		log:    o.Logger,
		hist:   newHistory(o),
		states: map[string]componentState{},
	}
	d.alerts = newAlerter(o, d.log)
	d.current = d.buildState(nil, sources{}, o.Now())
	d.handler = d.routes()
	return d
}

func orDefault[T int | float64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Run samples every Interval until ctx is done, then waits for alerts
// still being delivered. The first sample is taken at once.
func (d *Dashboard) Run(ctx context.Context) error {
	t := time.NewTicker(d.o.Interval)
	defer t.Stop()
	for {
		if err := d.Collect(ctx); err != nil {
			d.log.LogAttrs(ctx, slog.LevelWarn, "dashboard: scrape failed", slog.String("err", err.Error()))
		}
		select {
		case <-ctx.Done():
			d.alerts.wait()
			return nil
		case <-t.C:
		}
	}
}

// Collect takes one sample now: it scrapes, updates the history, judges
// the components, evaluates the alerts and refreshes what the page and
// the API serve. Run calls it every Interval; tests call it directly.
func (d *Dashboard) Collect(ctx context.Context) error {
	now := d.o.Now()
	var buf bytes.Buffer
	err := d.o.Scrape(&buf)
	var snap snapshot
	if err == nil {
		snap, err = parseExposition(&buf, now)
	}
	if err != nil {
		err = fmt.Errorf("dashboard: scrape: %w", err)
		d.mu.Lock()
		d.current.ScrapeError = err.Error()
		d.current.Updated = now
		d.mu.Unlock()
		return err
	}
	src := d.read()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hist.add(snap)
	judged := judgeAll(d.hist, d.o.Thresholds, src.plan)
	for _, j := range judged {
		prev, ok := d.states[j.name]
		if !ok || prev.health != j.health {
			d.states[j.name] = componentState{health: j.health, since: now}
		}
	}
	d.alerts.evaluate(ctx, d.hist, now)
	d.current = d.buildState(judged, src, now)
	return nil
}

// sources is what Collect reads besides the metrics, before it takes
// the lock: the sources may be slow (a query for the recent errors).
type sources struct {
	slow   []SlowQuery
	traces []Trace
	errors []ErrorEntry
	drills []string
}

func (d *Dashboard) read() sources {
	var s sources
	if d.o.SlowQueries != nil {
		s.slow = d.o.SlowQueries()
	}
	if d.o.SlowTraces != nil {
		s.traces = d.o.SlowTraces()
	}
	if d.o.RecentErrors != nil {
		s.errors = d.o.RecentErrors()
	}
	if d.o.Drill != nil {
		s.drills = d.o.Drill.Active()
	}
	return s
}

// plan is the newest plan the slow-query log kept for a query, or "".
func (s sources) plan(query string) string {
	var best *SlowQuery
	for i, q := range s.slow {
		if q.Name == query && q.Plan != "" && (best == nil || q.Time.After(best.Time)) {
			best = &s.slow[i]
		}
	}
	if best == nil {
		return ""
	}
	return best.Plan
}

// State returns what the page shows now.
func (d *Dashboard) State() State {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.current
}

// Advise returns the current scale-out advice.
func (d *Dashboard) Advise() advise.Advice { return d.State().Advice }

// Diagnose returns the current reading of the dependency chain.
func (d *Dashboard) Diagnose() Diagnosis { return d.State().Diagnosis }

// Handler serves the page, its files and its API under /ops/: mount it
// on the admin listener with mux.Handle("/ops/", h).
func (d *Dashboard) Handler() http.Handler { return d.handler }
