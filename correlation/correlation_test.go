package correlation_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"onebox/correlation"
)

func TestRequestID(t *testing.T) {
	t.Parallel()
	if id := correlation.RequestID(context.Background()); id != "" {
		t.Errorf("RequestID of a bare context = %q, want empty", id)
	}
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "below"))
	ctx := correlation.WithRequestID(parent, "req-1")
	if id := correlation.RequestID(ctx); id != "req-1" {
		t.Errorf("RequestID = %q, want req-1", id)
	}
	if v := ctx.Value(key{}); v != "below" {
		t.Errorf("a value set below the id: %v, want it seen through", v)
	}
	above := context.WithValue(ctx, key{}, "above")
	if id := correlation.RequestID(above); id != "req-1" {
		t.Errorf("RequestID under another value = %q, want req-1", id)
	}
	if id := correlation.RequestID(correlation.WithRequestID(above, "req-2")); id != "req-2" {
		t.Errorf("RequestID set twice = %q, want the last, req-2", id)
	}
	child, stop := context.WithCancel(ctx)
	defer stop()
	cancel()
	<-child.Done() // a cancellation above the id reaches below it
	if ctx.Err() == nil {
		t.Error("the id's context is not cancelled with its parent")
	}
}

// A traceparent made from a span context reads back as the same trace,
// span and flags; no span, or a malformed value, gives none.
func TestTraceParentRoundTrip(t *testing.T) {
	t.Parallel()
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled,
	})
	tp := correlation.TraceParent(trace.ContextWithSpanContext(context.Background(), sc))
	if want := "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"; tp != want {
		t.Fatalf("TraceParent = %q, want %q", tp, want)
	}
	got := correlation.SpanContext(tp)
	if got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || got.TraceFlags() != sc.TraceFlags() {
		t.Errorf("SpanContext(%q) = %v, want %v", tp, got, sc)
	}
	if tp := correlation.TraceParent(context.Background()); tp != "" {
		t.Errorf("TraceParent without a span = %q, want empty", tp)
	}
	for _, bad := range []string{"", "00-zz-01", "00-00000000000000000000000000000000-0000000000000000-01"} {
		if correlation.SpanContext(bad).IsValid() {
			t.Errorf("SpanContext(%q) is valid", bad)
		}
	}
}

func TestOnBehalfOf(t *testing.T) {
	t.Parallel()
	if who := correlation.OnBehalfOf(context.Background()); who != "" {
		t.Errorf("OnBehalfOf of a bare context = %q, want empty", who)
	}
	for _, want := range []string{correlation.Route("PATCH", "/v1/users/me"), correlation.Job("photo.process")} {
		if who := correlation.OnBehalfOf(correlation.WithOnBehalfOf(context.Background(), want)); who != want {
			t.Errorf("OnBehalfOf = %q, want %q", who, want)
		}
	}
	if got := correlation.Route("PATCH", "/v1/users/me") + "|" + correlation.Job("photo.process"); got != "PATCH /v1/users/me|job photo.process" {
		t.Errorf("names = %q", got)
	}
}

// TestRequestAndOnBehalfOf: the id and the name share one context value;
// setting either keeps the other, in either order (a job's context gets
// its request's id, then its kind).
func TestRequestAndOnBehalfOf(t *testing.T) {
	t.Parallel()
	bg := context.Background()
	for _, tt := range []struct {
		name string
		ctx  context.Context
	}{
		{"id, then name", correlation.WithOnBehalfOf(correlation.WithRequestID(bg, "req-1"), "job k")},
		{"name, then id", correlation.WithRequestID(correlation.WithOnBehalfOf(bg, "job k"), "req-1")},
		{"both at once", correlation.WithRequest(bg, "req-1", "job k")},
	} {
		if id, who := correlation.RequestID(tt.ctx), correlation.OnBehalfOf(tt.ctx); id != "req-1" || who != "job k" {
			t.Errorf("%s: RequestID %q, OnBehalfOf %q, want req-1, job k", tt.name, id, who)
		}
	}
}
