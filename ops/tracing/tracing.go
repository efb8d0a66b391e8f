// Package tracing is onebox's OpenTelemetry set-up: a tracer whose spans
// are always recorded, kept in memory as the slowest recent traces (for
// the dashboard, with or without an exporter), and sent to an OTLP
// collector when main gives it an exporter. A job's span links back to the
// request that enqueued it through the traceparent the job carries
// (package correlation).
//
// A nil *Tracing is valid and traces nothing, at no cost.
package tracing

import (
	"context"
	"fmt"
	"sync"
	"time"

	"onebox/correlation"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"onebox/jobs"
	"onebox/store"
)

// Attribute keys onebox sets on its spans besides OpenTelemetry's own.
const (
	AttrRequestID = "onebox.request_id" // on request spans, and on job spans: the enqueuing request
	AttrJobID     = "onebox.job.id"
	AttrJobKind   = "onebox.job.kind"
	AttrAttempt   = "onebox.job.attempt"
)

// Options configure New. Zero fields take the defaults.
type Options struct {
	// Exporter, if set, gets every span in batches (OTLP in production).
	// Without one, spans live only in the slowest-traces memory.
	Exporter sdktrace.SpanExporter
	// Keep is how many of the slowest traces Slowest returns per kind of
	// root (requests, jobs). Default 20.
	Keep int
	// Window is how far back Slowest looks. Default 5m.
	Window time.Duration
	// MaxSpans bounds the spans kept per trace. Default 200.
	MaxSpans int
	// Version is the service.version resource attribute.
	Version string
	// Now is the clock of the slowest-traces window; default time.Now.
	Now func() time.Time
}

// Tracing owns the tracer provider.
type Tracing struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	keeper   *keeper
	queries  sync.Map // query name → *querySpan
}

// New returns a Tracing whose spans are all sampled.
func New(o Options) *Tracing {
	if o.Keep <= 0 {
		o.Keep = 20
	}
	if o.Window <= 0 {
		o.Window = 5 * time.Minute
	}
	if o.MaxSpans <= 0 {
		o.MaxSpans = 200
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	k := newKeeper(o.Keep, o.Window, o.MaxSpans, o.Now)
	attrs := []attribute.KeyValue{attribute.String("service.name", "onebox")}
	if o.Version != "" {
		attrs = append(attrs, attribute.String("service.version", o.Version))
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
		sdktrace.WithSpanProcessor(k),
	}
	if o.Exporter != nil {
		opts = append(opts, sdktrace.WithBatcher(o.Exporter))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return &Tracing{provider: tp, tracer: tp.Tracer("onebox"), keeper: k}
}

// Tracer is the tracer onebox's spans come from; nil for a nil Tracing.
func (t *Tracing) Tracer() trace.Tracer {
	if t == nil {
		return nil
	}
	return t.tracer
}

// Slowest returns the slowest traces that ended within the window: up
// to Keep request traces, slowest first, then up to Keep job traces.
func (t *Tracing) Slowest() []TraceSummary {
	if t == nil {
		return nil
	}
	return t.keeper.slowest()
}

// Shutdown flushes the exporter, if any, and stops recording.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

func noEnd(error) {}

// Child starts a span named name under the recording span of ctx, and
// returns end, which ends it, with an error status if err is a failure
// (store.Failed: "not found" and the like are answers, not errors). Without a
// recording span in ctx (tracing off, or work outside a traced request
// or job) it does nothing, so background polling makes no traces.
func (t *Tracing) Child(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, func(err error)) {
	if t == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noEnd
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
	return ctx, func(err error) {
		if store.Failed(err) {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// Record adds a span named name that ends now and lasted d, under the
// recording span of ctx (nothing without one): for work measured after
// the fact, such as a query reported by the store's hook. A failure
// (store.Failed) gives it an error status.
func (t *Tracing) Record(ctx context.Context, name string, d time.Duration, err error, attrs ...attribute.KeyValue) {
	if t == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	t.record(ctx, name, time.Now(), d, err, trace.WithAttributes(attrs...))
}

// record adds a span that lasted d and ended at end.
func (t *Tracing) record(ctx context.Context, name string, end time.Time, d time.Duration, err error, attrs trace.SpanStartEventOption) {
	_, span := t.tracer.Start(ctx, name, trace.WithTimestamp(end.Add(-d)), attrs)
	if store.Failed(err) {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End(trace.WithTimestamp(end))
}

// Query records a database query reported by the store's OnQuery hook as
// a span "db <name>" with its SQL (never its arguments).
func (t *Tracing) Query(ctx context.Context, ev store.QueryEvent) {
	if t == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	q := t.query(ev)
	end := ev.End
	if end.IsZero() {
		end = time.Now()
	}
	t.record(ctx, q.span, end, ev.Duration, ev.Err, q.attrs)
}

// querySpan is what every span of one named query shares, made once: a
// query runs on most requests, and its name and SQL do not change.
type querySpan struct {
	span  string
	sql   string
	attrs trace.SpanStartEventOption
}

// query returns the querySpan of ev's name. Names are few and stable
// (store.QueryEvent), so the map stays small; a name seen with other SQL
// than it was first stored with (SQL built per call) gets a fresh one.
func (t *Tracing) query(ev store.QueryEvent) *querySpan {
	if v, ok := t.queries.Load(ev.Name); ok {
		if q := v.(*querySpan); q.sql == ev.SQL {
			return q
		}
	}
	q := &querySpan{
		span: "db " + ev.Name,
		sql:  ev.SQL,
		attrs: trace.WithAttributes(
			attribute.String("db.operation.name", ev.Name), attribute.String("db.query.text", ev.SQL)),
	}
	t.queries.LoadOrStore(ev.Name, q)
	return q
}

// Job wraps a job handler: each attempt is the root span of its own
// trace, "job <kind>", linked to the span of the request that enqueued
// it (the message's TraceParent). A nil Tracing returns h itself.
func (t *Tracing) Job(h jobs.Handler) jobs.Handler {
	if t == nil {
		return h
	}
	return func(ctx context.Context, m jobs.Message) (err error) {
		opts := []trace.SpanStartOption{
			trace.WithNewRoot(),
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String(AttrJobID, m.ID), attribute.String(AttrJobKind, m.Kind),
				attribute.Int(AttrAttempt, m.Attempt), attribute.String(AttrRequestID, m.RequestID)),
		}
		if sc := correlation.SpanContext(m.TraceParent); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
		ctx, span := t.tracer.Start(ctx, "job "+m.Kind, opts...)
		defer func() {
			if p := recover(); p != nil {
				span.SetStatus(codes.Error, fmt.Sprintf("panic: %v", p))
				span.End()
				panic(p) // the Runner turns it into a failed attempt
			}
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
		return h(ctx, m)
	}
}
