// Package correlation carries what ties a piece of work to the request
// that caused it: the request id and the W3C trace context. The HTTP
// middleware puts them on the request's context, a job carries them in its
// message, and the Runner puts them back on the job's context, so a log
// line, a query or a span anywhere can name its request.
//
// It is a leaf: it imports nothing of onebox's, so the queue, the pipeline
// and the API can all use it without importing the operator tooling.
package correlation

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

type requestIDKey struct{}

// WithRequestID returns ctx carrying the request id, so every log line,
// query and job started under it can name the request that caused it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return &requestIDCtx{Context: ctx, id: id}
}

// RequestID returns the id stored by WithRequestID, or "".
func RequestID(ctx context.Context) string {
	if c, ok := ctx.Value(requestIDKey{}).(*requestIDCtx); ok {
		return c.id
	}
	return ""
}

// requestIDCtx is context.WithValue(ctx, requestIDKey{}, id) in one
// allocation, not two: WithValue would also box the string, on every
// request. Its Value gives itself for the key, a pointer, which boxes
// for free; RequestID reads the id from it.
type requestIDCtx struct {
	context.Context
	id string
}

func (c *requestIDCtx) Value(key any) any {
	if key == (requestIDKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func (c *requestIDCtx) String() string { return "correlation.WithRequestID(" + c.id + ")" }

// TraceParent is the W3C traceparent of the span in ctx, "" without one:
// what a job carries to link back to the request that enqueued it.
func TraceParent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// SpanContext is the inverse of TraceParent; an invalid or empty value
// gives an invalid SpanContext.
func SpanContext(traceParent string) trace.SpanContext {
	if traceParent == "" {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceParent})
	return trace.SpanContextFromContext(ctx)
}
