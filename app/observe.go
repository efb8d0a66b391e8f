package app

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"onebox/cache"
	"onebox/ops/metrics"
)

// route is what the observe middleware needs about a route template and
// method, computed once: the request path makes one map lookup.
type route struct {
	metrics  *metrics.Route
	spanName string // "GET /v1/users/:id"
	method   attribute.KeyValue
	template attribute.KeyValue
	stream   bool // an event stream: counted, not traced (it lasts up to an hour)
}

// serverSpan: the request span's options; its attributes are set once,
// when it ends.
var serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}

type routeKey struct{ method, path string }

// methods are the request methods with a label of their own; others are
// counted as "other".
var methods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
	"DELETE": true, "OPTIONS": true, "CONNECT": true, "TRACE": true,
}

// route returns the route of a request, by its method and the template
// echo matched ("" when none did). a.seen caches them; the set is
// closed: the templates registered, "unmatched", and the methods of
// net/http.
func (a *App) route(method, template string) *route {
	if !methods[method] {
		method = metrics.Other // a client may send any word: the cache must stay bounded
	}
	k := routeKey{method, template}
	if r, ok := a.seen.Load(k); ok {
		return r.(*route)
	}
	tmpl := routeLabel(template)
	r := &route{
		metrics:  a.metrics.Route(method, tmpl),
		spanName: method + " " + tmpl,
		method:   attribute.String("http.request.method", method),
		template: attribute.String("http.route", tmpl),
		// Both stream routes end in /events; nothing else does.
		stream: strings.HasSuffix(tmpl, "/events"),
	}
	prev, _ := a.seen.LoadOrStore(k, r)
	return prev.(*route)
}

// CacheName names the cache-aside a cache key belongs to, "profiles" or
// "sessions" ("other" for anything else), so that the metrics of the one
// cache they share, such as evictions, can tell them apart.
func CacheName(key string) string {
	switch {
	case strings.HasPrefix(key, "u:"):
		return "profiles"
	case strings.HasPrefix(key, "s:"):
		return "sessions"
	}
	return "other"
}

// observeCache adds the metrics and tracing hooks of the cache-aside
// named name to o, when they are on.
func (a *App) observeCache(name string, o cache.AsideOptions) cache.AsideOptions {
	if cm := a.metrics.Cache(name); cm != nil {
		o.OnLookup, o.OnLoad = cm.Lookup, cm.Load
	}
	if a.tracing != nil {
		spanName, attr := "cache.load "+name, attribute.String("onebox.cache", name)
		o.StartLoad = func(ctx context.Context) (context.Context, func(error)) {
			return a.tracing.Child(ctx, spanName, attr)
		}
	}
	return o
}
