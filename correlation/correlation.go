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

// requestKey carries a request: its id and on whose behalf its work
// runs, in one context value, so the request path pays one.
type requestKey struct{}

// requestCtx is context.WithValue(ctx, requestKey{}, request) in one
// allocation, not two: WithValue would also box the struct, on every
// request. Its Value gives itself for the key, a pointer, which boxes
// for free; the readers take the fields from it.
type requestCtx struct {
	context.Context
	id, onBehalfOf string
}

func (c *requestCtx) Value(key any) any {
	if key == (requestKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func (c *requestCtx) String() string {
	return "correlation.WithRequest(" + c.id + ", " + c.onBehalfOf + ")"
}

func current(ctx context.Context) (id, onBehalfOf string) {
	if c, ok := ctx.Value(requestKey{}).(*requestCtx); ok {
		return c.id, c.onBehalfOf
	}
	return "", ""
}

// WithRequestID returns ctx carrying the request id, so every log line,
// query and job started under it can name the request that caused it.
func WithRequestID(ctx context.Context, id string) context.Context {
	_, who := current(ctx)
	return &requestCtx{Context: ctx, id: id, onBehalfOf: who}
}

// WithRequest is WithRequestID and WithOnBehalfOf at once: the request
// middleware's, one context value for both.
func WithRequest(ctx context.Context, id, onBehalfOf string) context.Context {
	return &requestCtx{Context: ctx, id: id, onBehalfOf: onBehalfOf}
}

// RequestID returns the id stored by WithRequestID, or "".
func RequestID(ctx context.Context) string {
	id, _ := current(ctx)
	return id
}

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

// WithOnBehalfOf returns ctx naming on whose behalf the work under it
// runs: a route ("PATCH /v1/users/me", as Route makes it) or a job kind
// (Job). The SQLite writer records it with every hold of its lock, so an
// operator sees which route or job kept the others waiting. The value
// must come from a bounded set: metrics use it as a label.
func WithOnBehalfOf(ctx context.Context, who string) context.Context {
	id, _ := current(ctx)
	return &requestCtx{Context: ctx, id: id, onBehalfOf: who}
}

// OnBehalfOf returns the name stored by WithOnBehalfOf or WithRequest,
// or "".
func OnBehalfOf(ctx context.Context) string {
	_, who := current(ctx)
	return who
}

// Route is the on-behalf-of name of a request: its method and route
// template, "PATCH /v1/users/:id".
func Route(method, template string) string { return method + " " + template }

// Job is the on-behalf-of name of a job of kind: "job photo.process".
func Job(kind string) string { return "job " + kind }
