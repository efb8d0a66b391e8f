package tracing_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"onebox/correlation"

	"go.opentelemetry.io/otel/trace"

	"onebox/jobs"
	"onebox/ops/tracing"
	"onebox/store"
)

// clock is a settable time for the slowest-traces window.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// request runs a root server span of duration d (by its timestamps) with
// one child.
func request(tr *tracing.Tracing, name string, d time.Duration) {
	start := time.Now().Add(-d)
	ctx, span := tr.Tracer().Start(context.Background(), name, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start))
	tr.Record(ctx, "db q", d/2, nil)
	span.End(trace.WithTimestamp(start.Add(d)))
}

func TestSlowestKeepsTheSlowestOfTheWindow(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	tr := tracing.New(tracing.Options{Keep: 3, Window: 5 * time.Minute, Now: clk.Now})
	for i := range 10 {
		request(tr, fmt.Sprint("r", i), time.Duration(i+1)*time.Millisecond)
	}
	got := tr.Slowest()
	if len(got) != 3 || got[0].Name != "r9" || got[1].Name != "r8" || got[2].Name != "r7" {
		t.Fatalf("slowest %v, want r9 r8 r7", summaries(got))
	}
	if s := got[0]; len(s.Spans) != 2 || s.Spans[1].Name != "db q" || s.Spans[1].Depth != 1 || s.Spans[1].ParentID != s.Spans[0].SpanID {
		t.Fatalf("span tree %+v", s.Spans)
	}
	// A minute on, faster requests land in a new bucket; the old ones
	// still count.
	clk.Add(time.Minute)
	request(tr, "later", 500*time.Microsecond)
	if got := tr.Slowest(); len(got) != 3 || got[0].Name != "r9" {
		t.Fatalf("after a minute: %v", summaries(got))
	}
	// Past the window, only the recent one is left.
	clk.Add(5 * time.Minute)
	request(tr, "last", time.Millisecond)
	if got := tr.Slowest(); len(got) != 1 || got[0].Name != "last" {
		t.Fatalf("after the window: %v", summaries(got))
	}
}

func summaries(ts []tracing.TraceSummary) []string {
	var out []string
	for _, t := range ts {
		out = append(out, fmt.Sprintf("%s %s %v", t.Kind, t.Name, t.Duration))
	}
	return out
}

// TestChildNeedsARecordingParent: outside a traced request (background
// polling), Child, Record and Query make no spans and no traces.
func TestChildNeedsARecordingParent(t *testing.T) {
	t.Parallel()
	tr := tracing.New(tracing.Options{})
	ctx, end := tr.Child(context.Background(), "orphan")
	end(nil)
	tr.Record(ctx, "orphan", time.Millisecond, nil)
	tr.Query(ctx, store.QueryEvent{Name: "q", Duration: time.Millisecond})
	if got := tr.Slowest(); len(got) != 0 {
		t.Fatalf("traces without a root: %v", summaries(got))
	}
	var none *tracing.Tracing // off
	ctx, end = none.Child(context.Background(), "x")
	end(errors.New("x"))
	none.Query(ctx, store.QueryEvent{})
	if none.Slowest() != nil || none.Tracer() != nil || none.Shutdown(ctx) != nil {
		t.Fatal("a nil Tracing did something")
	}
}

// TestJobLinksToItsRequest: the job's span is a root of its own trace,
// linked to the span whose context the message carries; errors and
// failures show on the spans, "not found" does not.
func TestJobLinksToItsRequest(t *testing.T) {
	t.Parallel()
	tr := tracing.New(tracing.Options{})
	ctx, span := tr.Tracer().Start(context.Background(), "POST /v1/photos", trace.WithSpanKind(trace.SpanKindServer))
	ectx, end := tr.Child(ctx, "enqueue photo.process")
	m := jobs.Message{ID: "j1", Kind: "photo.process", RequestID: "req-1", Attempt: 2, TraceParent: correlation.TraceParent(ectx)}
	tr.Query(ectx, store.QueryEvent{Name: "missing", Duration: time.Millisecond, Err: store.ErrNotFound})
	tr.Query(ectx, store.QueryEvent{Name: "busy", Duration: time.Millisecond, Err: store.ErrBusy})
	end(nil)
	span.End()
	if m.TraceParent == "" || correlation.TraceParent(context.Background()) != "" {
		t.Fatalf("TraceParent %q", m.TraceParent)
	}

	failed := errors.New("decode failed")
	err := tr.Job(func(ctx context.Context, m jobs.Message) error {
		tr.Record(ctx, "pipeline.decode", time.Millisecond, nil)
		return failed
	})(context.Background(), m)
	if err != failed {
		t.Fatalf("Job returned %v", err)
	}

	var req, job tracing.TraceSummary
	for _, s := range tr.Slowest() {
		switch s.Kind {
		case "request":
			req = s
		case "job":
			job = s
		}
	}
	if job.Name != "job photo.process" || job.LinkedTraceID != req.TraceID || job.TraceID == req.TraceID ||
		job.RequestID != "req-1" || job.Error != "decode failed" || len(job.Spans) != 2 {
		t.Fatalf("job trace %+v, request trace %s", job, req.TraceID)
	}
	if a := job.Spans[0].Attrs; a[tracing.AttrJobID] != "j1" || a[tracing.AttrAttempt] != "2" || a[tracing.AttrJobKind] != "photo.process" {
		t.Errorf("job attributes %v", a)
	}
	errs := map[string]string{}
	for _, s := range req.Spans {
		errs[s.Name] = s.Error
	}
	if errs["db missing"] != "" || errs["db busy"] == "" || len(req.Spans) != 4 {
		t.Errorf("request spans %+v", req.Spans)
	}
}

// TestJobPanic: a panicking handler still ends its span, and the panic
// goes on to the Runner.
func TestJobPanic(t *testing.T) {
	t.Parallel()
	tr := tracing.New(tracing.Options{})
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic was swallowed")
			}
		}()
		_ = tr.Job(func(context.Context, jobs.Message) error { panic("boom") })(context.Background(), jobs.Message{Kind: "k"})
	}()
	if got := tr.Slowest(); len(got) != 1 || got[0].Error != "panic: boom" {
		t.Fatalf("traces %+v", got)
	}
}

// BenchmarkRequestSpan is the cost of a request's root span with no
// children, the cached read's case: start, two attributes, end into the
// slowest-traces keeper.
func BenchmarkRequestSpan(b *testing.B) {
	tr := tracing.New(tracing.Options{})
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, span := tr.Tracer().Start(context.Background(), "GET /v1/users/:id", opts...)
			span.End()
		}
	})
}

// TestQuerySpans: each query the store reports is a "db <name>" span with
// its name and SQL as attributes, also when a name comes back with other
// SQL than it first had, and a failed query has an error status.
func TestQuerySpans(t *testing.T) {
	t.Parallel()
	tr := tracing.New(tracing.Options{Keep: 10})
	events := []store.QueryEvent{
		{Name: "users_by_id", SQL: "SELECT 1", Duration: time.Millisecond},
		{Name: "users_by_id", SQL: "SELECT 1", Duration: time.Millisecond},
		{Name: "users_by_id", SQL: "SELECT 2", Duration: time.Millisecond, Err: errors.New("disk I/O error")},
	}
	for i, ev := range events {
		ctx, span := tr.Tracer().Start(context.Background(), fmt.Sprint("r", i), trace.WithSpanKind(trace.SpanKindServer))
		tr.Query(ctx, ev)
		span.End()
	}
	got := tr.Slowest()
	if len(got) != len(events) {
		t.Fatalf("%d traces, want %d", len(got), len(events))
	}
	for _, ts := range got {
		var i int
		fmt.Sscanf(ts.Name, "r%d", &i)
		if len(ts.Spans) != 2 {
			t.Fatalf("%s: spans %+v", ts.Name, ts.Spans)
		}
		db, ev := ts.Spans[1], events[i]
		if db.Name != "db users_by_id" || db.Attrs["db.operation.name"] != "users_by_id" || db.Attrs["db.query.text"] != ev.SQL {
			t.Errorf("%s: db span %+v, want SQL %q", ts.Name, db, ev.SQL)
		}
		if (db.Error != "") != (ev.Err != nil) {
			t.Errorf("%s: error %q for %v", ts.Name, db.Error, ev.Err)
		}
	}
}

// TestQuerySpanAtItsTime: a query reported after it ended (the SQLite
// store reports a write's queries once it lets the writer go) gets a
// span at the time it ran, not at the time of the report.
func TestQuerySpanAtItsTime(t *testing.T) {
	t.Parallel()
	tr := tracing.New(tracing.Options{Keep: 10})
	start := time.Now().Add(-time.Second)
	ctx, span := tr.Tracer().Start(context.Background(), "r", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start))
	tr.Query(ctx, store.QueryEvent{Name: "photos_insert", Duration: 10 * time.Millisecond, End: start.Add(30 * time.Millisecond)})
	span.End()
	got := tr.Slowest()
	if len(got) != 1 || len(got[0].Spans) != 2 {
		t.Fatalf("traces %+v, want one with a query span", got)
	}
	if db := got[0].Spans[1]; db.Offset != 20*time.Millisecond || db.Duration != 10*time.Millisecond {
		t.Errorf("query span at %v for %v, want at 20ms for 10ms", db.Offset, db.Duration)
	}
}
