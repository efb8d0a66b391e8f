package dashboard_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"onebox/ops/dashboard"
)

// proc stands in for a running onebox: a metrics.Set with the names the
// metrics package exposes, driven by the test, and a clock.
type proc struct {
	t   *testing.T
	set *metrics.Set
	now time.Time
	d   *dashboard.Dashboard
}

func newProc(t *testing.T, o dashboard.Options) *proc {
	t.Helper()
	p := &proc{t: t, set: metrics.NewSet(), now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	o.Scrape = func(w io.Writer) error { p.set.WritePrometheus(w); return nil }
	if o.Now == nil {
		o.Now = func() time.Time { return p.now }
	}
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	if o.Window == 0 {
		o.Window = time.Minute
	}
	if o.Recent == 0 {
		o.Recent = 5 * time.Second
	}
	p.d = dashboard.New(o)
	// Every component exposes its metrics from the start, as the real
	// process does.
	p.gauge(`onebox_jobs_queued{kind="photo"}`, 0)
	p.gauge(`onebox_jobs_oldest_age_seconds{kind="photo"}`, 0)
	p.gauge(`onebox_jobs_dead{kind="photo"}`, 0)
	p.gauge("onebox_disk_free_bytes", 80<<30)
	p.gauge("onebox_disk_size_bytes", 100<<30)
	p.set.GetOrCreateCounter(`onebox_ratelimit_requests_total{policy="api",result="allowed"}`)
	p.set.GetOrCreateFloatCounter("onebox_db_writer_wait_seconds_total")
	return p
}

func (p *proc) gauge(name string, v float64) { p.set.GetOrCreateGauge(name, nil).Set(v) }

func (p *proc) request(route, code string, d time.Duration) {
	p.set.GetOrCreateCounter(fmt.Sprintf(`onebox_http_requests_total{route=%q,method="GET",code=%q}`, route, code)).Inc()
	p.set.GetOrCreateHistogram(fmt.Sprintf(`onebox_http_request_duration_seconds{route=%q,method="GET"}`, route)).Update(d.Seconds())
	slow := p.set.GetOrCreateCounter(fmt.Sprintf(`onebox_http_requests_slow_total{route=%q,method="GET",threshold="0.5"}`, route))
	if d > 500*time.Millisecond {
		slow.Inc()
	}
	p.set.GetOrCreateCounter(`onebox_ratelimit_requests_total{policy="api",result="allowed"}`).Inc()
}

func (p *proc) query(name string, d time.Duration) {
	p.set.GetOrCreateHistogram(fmt.Sprintf(`onebox_db_query_duration_seconds{query=%q}`, name)).Update(d.Seconds())
}

func (p *proc) cache(hit bool, load time.Duration) {
	res := "miss"
	if hit {
		res = "hit"
	}
	p.set.GetOrCreateCounter(fmt.Sprintf(`onebox_cache_requests_total{cache="profiles",result=%q}`, res)).Inc()
	if !hit {
		p.set.GetOrCreateHistogram(`onebox_cache_load_duration_seconds{cache="profiles"}`).Update(load.Seconds())
	}
}

func (p *proc) job(outcome string, d time.Duration) {
	p.set.GetOrCreateCounter(fmt.Sprintf(`onebox_jobs_done_total{kind="photo",outcome=%q}`, outcome)).Inc()
	p.set.GetOrCreateHistogram(`onebox_job_duration_seconds{kind="photo"}`).Update(d.Seconds())
}

// warm runs n seconds of healthy traffic, which the baselines learn.
func (p *proc) warm(n int) {
	for range n {
		p.normal()
		p.tick()
	}
}

// tick advances the clock by one interval and samples.
func (p *proc) tick() {
	p.t.Helper()
	p.now = p.now.Add(time.Second)
	if err := p.d.Collect(context.Background()); err != nil {
		p.t.Fatal(err)
	}
}

// normal is one second of healthy traffic.
func (p *proc) normal() { p.traffic(3*time.Millisecond, 300*time.Microsecond, 200*time.Millisecond) }

// slowDatabase is one second of traffic while queries take 400ms: the
// requests and jobs that run them are slow and the queue backs up.
func (p *proc) slowDatabase(second int) {
	p.traffic(900*time.Millisecond, 400*time.Millisecond, 2*time.Second)
	p.gauge(`onebox_jobs_queued{kind="photo"}`, float64(5*second))
	p.gauge(`onebox_jobs_oldest_age_seconds{kind="photo"}`, float64(second))
}

// traffic is one second of 20 profile reads, each a cache hit of a
// request that runs a query, one cache miss (a load is a query) and one
// photo job.
func (p *proc) traffic(request, query, job time.Duration) {
	for range 20 {
		p.request("/v1/users/:id", "2xx", request)
		p.query("users_by_id", query)
		p.cache(true, 0)
	}
	p.cache(false, query)
	p.job("ok", job)
}

func panel(t *testing.T, s dashboard.State, name string) dashboard.Panel {
	t.Helper()
	for _, p := range s.Panels {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no panel %s", name)
	return dashboard.Panel{}
}

// noPanel fails t if s has a panel named name: one whose metrics the
// process does not have.
func noPanel(t *testing.T, s dashboard.State, name string) {
	t.Helper()
	for _, p := range s.Panels {
		if p.Name == name {
			t.Fatalf("a %s panel without its metrics: %+v", name, p)
		}
	}
}

func TestHealthyChain(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{})
	p.warm(10)
	s := p.d.State()
	diag := s.Diagnosis
	if !diag.Healthy || diag.Root != nil || diag.Summary != "all components healthy" {
		t.Fatalf("diagnosis: %+v", diag)
	}
	var order []string
	for _, pn := range s.Panels {
		order = append(order, pn.Name)
		if pn.State != dashboard.Healthy {
			t.Errorf("%s: %s %v", pn.Name, pn.State, pn.Evidence)
		}
		for _, m := range pn.Metrics {
			if m.Spark == "" && m.Value != "–" {
				t.Errorf("%s %s: a value but no sparkline", pn.Name, m.Label)
			}
		}
	}
	if got := strings.Join(order, " "); got != "http limiter cache queue workers database disk" {
		t.Fatalf("panel order %s", got)
	}
	if h := panel(t, s, "http").Metrics[0]; h.Label != "requests" || h.Value != "20/s" {
		t.Fatalf("HTTP headline %+v", h)
	}
	if d := panel(t, s, "disk"); d.Metrics[0].Value != "80 %" {
		t.Fatalf("disk %+v", d.Metrics[0])
	}
}

func TestNoDataIsUnknown(t *testing.T) {
	t.Parallel()
	d := dashboard.New(dashboard.Options{Scrape: func(w io.Writer) error { return nil }})
	if err := d.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := d.State()
	for _, pn := range s.Panels {
		if pn.State != dashboard.Unknown {
			t.Errorf("%s: %s", pn.Name, pn.State)
		}
	}
	if s.Diagnosis.Summary != "no data yet" || !s.Diagnosis.Healthy {
		t.Fatalf("%+v", s.Diagnosis)
	}
}

func TestScrapeErrorShown(t *testing.T) {
	t.Parallel()
	d := dashboard.New(dashboard.Options{Scrape: func(w io.Writer) error {
		io.WriteString(w, "onebox_http_in_flight_requests{oops 1\n")
		return nil
	}})
	if err := d.Collect(context.Background()); err == nil || !strings.Contains(d.State().ScrapeError, "line 1") {
		t.Fatalf("err %v, state %q", err, d.State().ScrapeError)
	}
}

// TestDatabaseRootCause reads an incident backwards: queries at 400ms
// against a baseline of 300µs make the database the root cause, and the
// slow requests, slow cache loads and the backed-up queue its symptoms.
func TestDatabaseRootCause(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{
		Thresholds: dashboard.Thresholds{QueueGrowth: 4 * time.Second, QueueOldest: 3 * time.Second},
		SlowQueries: func() []dashboard.SlowQuery {
			return []dashboard.SlowQuery{{Name: "users_by_id", Plan: "SCAN users", Duration: time.Second}}
		},
	})
	p.warm(20)
	start := p.now
	for i := range 6 {
		p.slowDatabase(i + 1)
		p.tick()
	}
	diag := p.d.Diagnose()
	if diag.Healthy || diag.Root == nil || diag.Root.Component != "database" || diag.Root.State != dashboard.Failing {
		t.Fatalf("root: %+v", diag.Root)
	}
	ev := strings.Join(diag.Root.Evidence, "\n")
	// 400ms and 300µs read from vmrange buckets, within 7 %; the time
	// spent is the queries' sum.
	for _, want := range []string{"query users_by_id p95 383 ms over the last 5s", "normally 297 µs", "100 runs, 40.0 s spent", "plan SCAN users"} {
		if !strings.Contains(ev, want) {
			t.Errorf("evidence lacks %q:\n%s", want, ev)
		}
	}
	if !diag.Root.Since.After(start) {
		t.Errorf("turned at %v, before the incident at %v", diag.Root.Since, start)
	}
	down := map[string]dashboard.Finding{}
	for _, f := range diag.Downstream {
		down[f.Component] = f
	}
	for comp, because := range map[string]string{
		"http":  "because requests wait on the database",
		"queue": "because jobs wait on the database",
		"cache": "because cache misses load from the database",
	} {
		f, ok := down[comp]
		if !ok || !f.State.Bad() || !strings.HasSuffix(f.Because, because) {
			t.Errorf("downstream %s: %+v", comp, f)
		}
	}
	if !strings.HasPrefix(down["queue"].Because, "Queue depth 30 and rising, from 10 4s ago") {
		t.Errorf("queue: %q", down["queue"].Because)
	}
	if !strings.Contains(diag.Summary, "Database failing") {
		t.Errorf("summary %q", diag.Summary)
	}
	var text bytes.Buffer
	if err := diag.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Root cause: Database, FAILING", "Because of it:", "jobs wait on the database", "Disk", "HEALTHY"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
}

// TestDiskBelowDatabase: a full disk is deeper than the database it
// slows, so it is the root cause.
func TestDiskBelowDatabase(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{})
	p.warm(10)
	p.gauge("onebox_disk_free_bytes", 3<<30)
	for range 4 {
		p.slowDatabase(0)
		p.set.GetOrCreateFloatCounter("onebox_db_writer_wait_seconds_total").Add(3)
		p.tick()
	}
	diag := p.d.Diagnose()
	if diag.Root == nil || diag.Root.Component != "disk" || diag.Root.State != dashboard.Failing {
		t.Fatalf("root %+v", diag.Root)
	}
	if !strings.Contains(diag.Root.Evidence[0], "3.0 % free (3.0 GiB of 100.0 GiB)") {
		t.Errorf("disk evidence %v", diag.Root.Evidence)
	}
	var db *dashboard.Finding
	for i, f := range diag.Downstream {
		if f.Component == "database" {
			db = &diag.Downstream[i]
		}
	}
	if db == nil || !strings.Contains(db.Because, "because the database waits on the disk") || !strings.Contains(strings.Join(db.Evidence, ";"), "writer wait 2.4 s/s") {
		t.Fatalf("database downstream: %+v", db)
	}
}

// TestSeparateProblem: a limiter refusing most requests has nothing to
// do with the slow database; it is listed apart.
func TestSeparateProblem(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{})
	p.warm(10)
	for range 3 {
		p.slowDatabase(0)
		p.set.GetOrCreateCounter(`onebox_ratelimit_requests_total{policy="api",result="limited"}`).Add(100)
		p.tick()
	}
	diag := p.d.Diagnose()
	if diag.Root == nil || diag.Root.Component != "database" {
		t.Fatalf("root %+v", diag.Root)
	}
	if len(diag.Others) != 1 || diag.Others[0].Component != "limiter" || !strings.Contains(diag.Others[0].Evidence[0], "checks refused") {
		t.Fatalf("others %+v", diag.Others)
	}
}

// TestBlameFollowsUnhealthyPaths: with the disk failing but the
// database fine, slow requests are not blamed on the disk through the
// healthy database, but on the limiter they do wait on.
func TestBlameFollowsUnhealthyPaths(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{})
	p.warm(10)
	p.gauge("onebox_disk_free_bytes", 1<<30)
	for range 3 {
		p.traffic(800*time.Millisecond, 300*time.Microsecond, 200*time.Millisecond)
		p.set.GetOrCreateCounter(`onebox_ratelimit_requests_total{policy="api",result="error"}`).Inc()
		p.tick()
	}
	diag := p.d.Diagnose()
	if diag.Root == nil || diag.Root.Component != "disk" || len(diag.Downstream) != 0 {
		t.Fatalf("root %+v, downstream %+v", diag.Root, diag.Downstream)
	}
	if len(diag.Others) != 2 || diag.Others[0].Component != "http" || diag.Others[1].Component != "limiter" ||
		!strings.HasSuffix(diag.Others[0].Because, "because requests wait on the rate limiter") || diag.Others[1].Because != "" {
		t.Fatalf("others: %+v", diag.Others)
	}
}

func TestWorkersFailing(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{})
	p.warm(5)
	p.job("retry", time.Second)
	p.job("dead", time.Second)
	p.gauge(`onebox_jobs_dead{kind="photo"}`, 1)
	p.normal()
	p.tick()
	s := p.d.State()
	w := panel(t, s, "workers")
	if w.State != dashboard.Degraded || strings.Join(w.Evidence, "; ") != "jobs dead-lettered: 1; 2 of 7 attempts failed" {
		t.Fatalf("workers %s %v", w.State, w.Evidence)
	}
	if s.Diagnosis.Root == nil || s.Diagnosis.Root.Component != "workers" {
		t.Fatalf("root %+v", s.Diagnosis.Root)
	}
}

// recorder is a slog handler that keeps messages, for asserting what was
// logged and how often.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "alert" {
			line += " " + a.Value.String()
		}
		return true
	})
	r.msgs = append(r.msgs, line)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

func TestReplicationPanel(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{})
	p.warm(3)
	noPanel(t, p.d.State(), "replicas") // without replicas

	replica := func(name string, in bool, lagBytes, lagSeconds float64) {
		p.gauge(fmt.Sprintf(`onebox_db_replica_lag_bytes{replica=%q}`, name), lagBytes)
		p.gauge(fmt.Sprintf(`onebox_db_replica_lag_seconds{replica=%q}`, name), lagSeconds)
		p.gauge(fmt.Sprintf(`onebox_db_replica_in_rotation{replica=%q}`, name), float64(btoi(in)))
	}
	tests := []struct {
		name      string
		set       func()
		state     dashboard.Health
		headline  string // replicas in rotation
		rows      []dashboard.ReplicaView
		evidence  string // in the evidence, if not empty
		maxLag    string
		maxReplay string
	}{
		{
			name:     "both in rotation",
			set:      func() { replica("r2:5432", true, 4096, 0.25); replica("r1:5432", true, 0, 0.001) },
			state:    dashboard.Healthy,
			headline: "2",
			rows: []dashboard.ReplicaView{
				{Name: "r1:5432", InRotation: true, LagBytes: "0 B", LagSeconds: "1.0 ms"},
				{Name: "r2:5432", InRotation: true, LagBytes: "4.0 KiB", LagSeconds: "250 ms"},
			},
			maxLag: "4.0 KiB", maxReplay: "250 ms",
		},
		{
			name:     "one left the rotation",
			set:      func() { replica("r2:5432", false, 64<<20, 30) },
			state:    dashboard.Degraded,
			headline: "1",
			rows: []dashboard.ReplicaView{
				{Name: "r1:5432", InRotation: true, LagBytes: "0 B", LagSeconds: "1.0 ms"},
				{Name: "r2:5432", InRotation: false, LagBytes: "64.0 MiB", LagSeconds: "30.0 s"},
			},
			evidence: "replica r2:5432 is out of the read rotation (64.0 MiB, 30.0 s behind)",
			maxLag:   "64.0 MiB", maxReplay: "30.0 s",
		},
		{
			name:     "none in rotation",
			set:      func() { replica("r1:5432", false, 0, 0) },
			state:    dashboard.Degraded,
			headline: "0",
			rows: []dashboard.ReplicaView{
				{Name: "r1:5432", InRotation: false, LagBytes: "0 B", LagSeconds: "0 s"},
				{Name: "r2:5432", InRotation: false, LagBytes: "64.0 MiB", LagSeconds: "30.0 s"},
			},
			evidence: "no replica in rotation: the primary serves every read",
			maxLag:   "64.0 MiB", maxReplay: "30.0 s",
		},
	}
	for _, tt := range tests {
		tt.set()
		p.normal()
		p.tick()
		s := p.d.State()
		var order []string
		for _, pn := range s.Panels {
			order = append(order, pn.Name)
		}
		if got := strings.Join(order, " "); got != "http limiter cache queue workers database disk replicas" {
			t.Fatalf("%s: panel order %s", tt.name, got)
		}
		pn := panel(t, s, "replicas")
		if pn.State != tt.state {
			t.Errorf("%s: state %s %v, want %s", tt.name, pn.State, pn.Evidence, tt.state)
		}
		if h := pn.Metrics[0]; h.Label != "in rotation" || h.Value != tt.headline {
			t.Errorf("%s: headline %s %s, want in rotation %s", tt.name, h.Value, h.Label, tt.headline)
		}
		if got := fmt.Sprint(pn.Replicas); got != fmt.Sprint(tt.rows) {
			t.Errorf("%s: rows\n%s, want\n%s", tt.name, got, fmt.Sprint(tt.rows))
		}
		if tt.evidence != "" && !slices.Contains(pn.Evidence, tt.evidence) {
			t.Errorf("%s: evidence %q, want %q in it", tt.name, pn.Evidence, tt.evidence)
		}
		if tt.evidence == "" && len(pn.Evidence) > 0 {
			t.Errorf("%s: evidence %q, want none", tt.name, pn.Evidence)
		}
		if m := pn.Metrics[1:]; len(m) != 2 || m[0].Value != tt.maxLag || m[1].Value != tt.maxReplay {
			t.Errorf("%s: max lags %+v, want %s and %s", tt.name, m, tt.maxLag, tt.maxReplay)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestBackupPanel: only an instance configured to verify backups has
// the panel; it fails on a failed verification and on one older than
// twice the interval, and is unknown on an instance that does not hold
// the schedule.
func TestBackupPanel(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{})
	p.warm(3)
	noPanel(t, p.d.State(), "backup")
	p.gauge("onebox_backup_verify_interval_seconds", 3600)
	tests := []struct {
		name     string
		set      func()
		state    dashboard.Health
		evidence string // the first sentence, if not empty
		values   string // age, restore time, last passed
	}{
		{"another instance verifies", func() {}, dashboard.Unknown,
			"another instance holds the verification schedule (every 1h); its dashboard has the results", "– – –"},
		{"the first run", func() { p.gauge("onebox_backup_verify_age_seconds", 2) }, dashboard.Healthy, "", "2.0 s – –"},
		{"passed", func() {
			p.gauge("onebox_backup_verify_ok", 1)
			p.gauge("onebox_backup_verify_restore_seconds", 0.25)
			p.gauge("onebox_backup_verify_age_seconds", 60)
		}, dashboard.Healthy, "", "1m 250 ms 1"},
		{"failed", func() { p.gauge("onebox_backup_verify_ok", 0) }, dashboard.Failing,
			`the last backup verification failed (the log line "backup verify failed" says why; onebox backup verify runs one)`, "1m 250 ms 0"},
		{"passed, twice the interval ago", func() {
			p.gauge("onebox_backup_verify_ok", 1)
			p.gauge("onebox_backup_verify_age_seconds", 7201)
		}, dashboard.Failing, "no backup verification ended for 2h0m1s, over twice the interval (1h)", "2h0m1s 250 ms 1"},
		{"passed, just under", func() { p.gauge("onebox_backup_verify_age_seconds", 7199) }, dashboard.Healthy, "", "1h59m59s 250 ms 1"},
	}
	for _, tt := range tests {
		tt.set()
		p.normal()
		p.tick()
		pn := panel(t, p.d.State(), "backup")
		if pn.State != tt.state {
			t.Errorf("%s: state %s %v, want %s", tt.name, pn.State, pn.Evidence, tt.state)
		}
		if tt.evidence == "" && len(pn.Evidence) > 0 || tt.evidence != "" && (len(pn.Evidence) == 0 || pn.Evidence[0] != tt.evidence) {
			t.Errorf("%s: evidence %q, want %q", tt.name, pn.Evidence, tt.evidence)
		}
		var values []string
		for _, m := range pn.Metrics {
			values = append(values, m.Value)
		}
		if got := strings.Join(values, " "); got != tt.values {
			t.Errorf("%s: values %s, want %s", tt.name, got, tt.values)
		}
	}
}
