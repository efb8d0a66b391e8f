package dashboard_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"onebox/jobs"
	"onebox/ops/advise"
	"onebox/ops/dashboard"
	"onebox/ops/metrics"
)

// TestAdviceFromMetrics drives the metrics package itself, so the names
// the advice reads are the ones exposed: a busy SQLite writer, a queue
// whose oldest job ages with every worker running, and one client
// taking most of a policy's rejections.
func TestAdviceFromMetrics(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{Kinds: []string{"photo"}, Workers: map[string]int{"photo": 4}})
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	d := dashboard.New(dashboard.Options{
		Scrape:   func(w io.Writer) error { m.WritePrometheus(w); return nil },
		Now:      func() time.Time { return now },
		Interval: time.Second, Window: time.Minute, Recent: 10 * time.Second,
	})
	ctx := context.Background()
	var busy, wait time.Duration
	for sec := range 12 {
		busy += 800 * time.Millisecond // the writer held 80 % of each second
		wait += 100 * time.Millisecond
		m.SampleOnce(ctx, metrics.Sources{
			DB: func() metrics.DBStats {
				return metrics.DBStats{Backend: "sqlite", WriterOpen: 1, WriterBusy: busy, WriterWait: wait}
			},
			Queue: func(context.Context) (jobs.Stats, error) {
				return jobs.Stats{Kinds: map[string]jobs.KindStats{"photo": {Queued: 10 * sec, InFlight: 4, OldestAge: time.Duration(sec) * 10 * time.Second}}}, nil
			},
		})
		for range 9 {
			m.Cache("profiles").Lookup(true)
		}
		m.Cache("profiles").Lookup(false)
		m.Cache("profiles").Load(4*time.Millisecond, nil)
		for i := range 20 {
			m.RateLimit("login", "198.51.100.7", i == 0)
		}
		m.RateLimit("login", "10.0.0.1", false)
		m.RateLimit("login", "10.0.0.2", true)
		if err := d.Collect(ctx); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Second)
	}
	a := d.Advise()
	by := map[string]advise.Verdict{}
	for _, v := range a.Verdicts {
		by[v.Step] = v
	}
	for step, want := range map[string]struct {
		answer advise.Answer
		says   string
	}{
		advise.StepCache:    {advise.Yes, "90% of lookups hit"},
		advise.StepPostgres: {advise.Yes, "busy 80% of the time"},
		advise.StepReplicas: {advise.No, "SQLite has no replicas"},
		advise.StepWorkers:  {advise.Yes, "100% of the workers ran"},
		advise.StepLimiter:  {advise.Yes, "198.51.100.7 has 95% of the rejections"},
	} {
		v := by[step]
		if v.Answer != want.answer || !strings.Contains(v.Because, want.says) {
			t.Errorf("%s: %s %q, want %s saying %q", step, v.Answer, v.Because, want.answer, want.says)
		}
	}
	if k := by[advise.StepLimiter].Keys; len(k) != 1 || k[0].Keys[0].Key != "198.51.100.7" || k[0].Keys[0].Rejected != 190 {
		t.Errorf("top keys over the last 10s: %+v", k)
	}
}
