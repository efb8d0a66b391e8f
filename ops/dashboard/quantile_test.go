package dashboard_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"onebox/ops/dashboard"
)

// metric returns a panel's number by key.
func metric(t *testing.T, s dashboard.State, key string) dashboard.MetricView {
	t.Helper()
	for _, p := range s.Panels {
		for _, m := range p.Metrics {
			if m.Key == key {
				return m
			}
		}
	}
	t.Fatalf("no metric %s", key)
	return dashboard.MetricView{}
}

// seconds reads "495 ms", "1.2 s" or "350 µs" back.
func seconds(t *testing.T, text string) float64 {
	t.Helper()
	num, unit, ok := strings.Cut(text, " ")
	v, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil {
		t.Fatalf("%q is not a point in seconds", text)
	}
	switch unit {
	case "s":
		return v
	case "ms":
		return v / 1e3
	case "µs":
		return v / 1e6
	}
	t.Fatalf("%q: unit %q", text, unit)
	return 0
}

// TestMergedQuantilesWithinTenPercent: routes whose every request took a
// known time merge into p50, p95 and p99 within 10 % of it, each stating
// its source and window, where fixed buckets 0.5–1 s apart read 0.5 s
// as 741 ms and 974 ms. The latencies sit anywhere in their buckets:
// just over a bound, in the middle, just under the next.
func TestMergedQuantilesWithinTenPercent(t *testing.T) {
	t.Parallel()
	for _, truth := range []time.Duration{500 * time.Millisecond, 465 * time.Millisecond, 527 * time.Millisecond, 3 * time.Millisecond, 2 * time.Second} {
		t.Run(truth.String(), func(t *testing.T) {
			t.Parallel()
			p := newProc(t, dashboard.Options{})
			for range 3 {
				for range 10 {
					p.request("/v1/users/:id", "2xx", truth)
					p.request("/v1/users/me", "2xx", truth)
				}
				p.tick()
			}
			s := p.d.State()
			for _, key := range []string{"http.p50", "http.p95", "http.p99"} {
				m := metric(t, s, key)
				got := seconds(t, m.Value)
				if off := got/truth.Seconds() - 1; off > 0.1 || off < -0.1 {
					t.Errorf("%s = %s for a true %s: %+.0f %%", key, m.Value, truth, 100*off)
				}
				if !strings.Contains(m.Source, "all routes, last 5s") || !strings.Contains(m.Source, "bucket") {
					t.Errorf("%s source %q", key, m.Source)
				}
			}
		})
	}
}

// TestCoarseBucketsShowARange: a histogram whose buckets are too wide for
// a point within 10 % (Prometheus le buckets 0.5–1 s) is shown as the
// range that holds the truth, never as a point interpolated inside it.
func TestCoarseBucketsShowARange(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{})
	p.tick()
	for range 20 {
		p.set.GetOrCreateCounter(`onebox_http_requests_total{route="/x",method="GET",code="2xx"}`).Inc()
		p.set.GetOrCreatePrometheusHistogramExt(`onebox_http_request_duration_seconds{route="/x",method="GET"}`, []float64{0.25, 0.5, 1, 2.5}).Update(0.6)
	}
	p.tick()
	if m := metric(t, p.d.State(), "http.p95"); m.Value != "500 ms–1.0 s" {
		t.Fatalf("p95 shown as %q, want the bucket's range", m.Value)
	}
}

// TestP95AlertOnSlowShare: http_p95 fires on the share of requests slower
// than the threshold, counted exactly: 5 % slower is a p95 at the
// threshold and does not fire; 6 % does, once it has held for For.
func TestP95AlertOnSlowShare(t *testing.T) {
	t.Parallel()
	second := func(p *proc, slow int) {
		for i := range 100 {
			d := 20 * time.Millisecond
			if i < slow {
				d = 501 * time.Millisecond
			}
			p.request("/v1/users/:id", "2xx", d)
		}
		p.tick()
	}
	p := newProc(t, dashboard.Options{Alerts: dashboard.AlertRules{For: 2 * time.Second}})
	for range 10 {
		second(p, 5)
	}
	if a := p.d.State().Alerts; len(a) != 0 {
		t.Fatalf("fired at 5 %% slow: %+v", a)
	}
	for range 4 {
		second(p, 6)
	}
	a := p.d.State().Alerts
	if len(a) != 1 || a[0].Name != "http_p95" || !strings.Contains(a[0].Summary, "% of requests slower than 500 ms, so p95 is above it") {
		t.Fatalf("alerts %+v", a)
	}
	for range 6 {
		second(p, 0)
	}
	log := p.d.State().AlertLog
	if len(log) == 0 || log[0].Status != "resolved" || !strings.HasPrefix(log[0].Summary, "resolved after 2s: now 4.8 % of requests slower than 500 ms, so p95 is within it") {
		t.Fatalf("alert log %+v", log)
	}
}

// TestEvidenceRankedByTimeSpent: of two abnormal queries, the one that
// cost more time in all (50 runs at 300ms) leads the evidence and the
// summary, before the one slower per run (one at 900ms).
func TestEvidenceRankedByTimeSpent(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{})
	for range 10 {
		p.query("photos_hot", 300*time.Microsecond)
		p.query("photos_rare", 300*time.Microsecond)
		p.warm(1)
	}
	for range 3 {
		for range 50 {
			p.query("photos_hot", 300*time.Millisecond)
		}
		p.query("photos_rare", 900*time.Millisecond)
		p.warm(1)
	}
	d := p.d.Diagnose()
	if d.Root == nil || d.Root.Component != "database" || len(d.Root.Evidence) < 2 {
		t.Fatalf("root %+v", d.Root)
	}
	if !strings.HasPrefix(d.Root.Evidence[0], "query photos_hot p95") || !strings.HasPrefix(d.Root.Evidence[1], "query photos_rare p95") {
		t.Fatalf("evidence not ranked by time spent:\n%s", strings.Join(d.Root.Evidence, "\n"))
	}
	if !strings.Contains(d.Summary, "photos_hot") {
		t.Fatalf("summary %q", d.Summary)
	}
}

// TestSlowQueriesGrouped: the slow-query log is shown one line per query
// name, with its count, p95 (nearest rank: a run that happened), max and
// total, ranked by total time; the SQL, plan and request are the slowest
// run's.
func TestSlowQueriesGrouped(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var log []dashboard.SlowQuery
	// 20 runs of 100ms to 290ms, 3.9 s in all, the slowest the 13th;
	// then one of 2s, slower but less time in all, and first by name.
	for i := range 20 {
		log = append(log, dashboard.SlowQuery{Time: at.Add(time.Duration(i) * time.Second), Name: "users_list",
			SQL: "SELECT 1", Duration: time.Duration(100+10*((i+7)%20)) * time.Millisecond, RequestID: fmt.Sprintf("r%d", i)})
	}
	log = append(log, dashboard.SlowQuery{Time: at, Name: "photos_update", SQL: "UPDATE", Duration: 2 * time.Second, Plan: "SCAN photos", RequestID: "u1"})
	p := newProc(t, dashboard.Options{SlowQueries: func() []dashboard.SlowQuery { return log }})
	p.tick()
	got := p.d.State().SlowQueries
	want := []dashboard.SlowQueryView{
		{Time: "12:00:19", Name: "users_list", Count: 20, P95: "280 ms", Max: "290 ms", Total: "3.9 s", SQL: "SELECT 1", RequestID: "r12"},
		{Time: "12:00:00", Name: "photos_update", Count: 1, P95: "2.0 s", Max: "2.0 s", Total: "2.0 s", SQL: "UPDATE", Plan: "SCAN photos", RequestID: "u1"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("slow queries\n got %+v\nwant %+v", got, want)
	}
}
