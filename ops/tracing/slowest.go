package tracing

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TraceSummary is one finished trace as the dashboard shows it: its root
// span and the spans under it, with their durations.
type TraceSummary struct {
	TraceID string `json:"trace_id"`
	// Kind is "request" (a server span at the root) or "job".
	Kind string `json:"kind"`
	// Name is the root span's: "GET /v1/users/:id", "job photo.process".
	Name string `json:"name"`
	// RequestID is the request's id, or for a job the enqueuing request's.
	RequestID string        `json:"request_id,omitempty"`
	Start     time.Time     `json:"start"`
	Duration  time.Duration `json:"duration"`
	Error     string        `json:"error,omitempty"` // the root span's error status
	// LinkedTraceID is, for a job, the trace of the request that
	// enqueued it.
	LinkedTraceID string `json:"linked_trace_id,omitempty"`
	// Spans are the root first, then each span followed by its children,
	// in start order. DroppedSpans were past the per-trace bound.
	Spans        []SpanSummary `json:"spans"`
	DroppedSpans int           `json:"dropped_spans,omitempty"`
}

// SpanSummary is one span of a TraceSummary.
type SpanSummary struct {
	SpanID   string            `json:"span_id"`
	ParentID string            `json:"parent_id,omitempty"` // "" for the root
	Name     string            `json:"name"`
	Depth    int               `json:"depth"`  // 0 for the root
	Offset   time.Duration     `json:"offset"` // start, after the root's start
	Duration time.Duration     `json:"duration"`
	Error    string            `json:"error,omitempty"`
	Attrs    map[string]string `json:"attrs,omitempty"`
}

// Bounds of the memory the keeper holds besides the kept traces.
const (
	maxPending = 4096 // traces whose root has not ended, with ended children
	buckets    = 5    // the window is kept as this many buckets
)

// keeper is a SpanProcessor that keeps the slowest root traces of the
// last window. A child span ends before its root, so the children of
// every running trace wait in pending (bounded) until their root ends;
// then the trace is kept if it is among the slowest of the current
// bucket, else dropped. A root without children that is faster than the
// current bucket's slowest costs no lock: two atomic loads.
type keeper struct {
	keep     int
	maxSpans int
	width    time.Duration // of one bucket
	now      func() time.Time
	floors   [2]floor // by kind index

	mu      sync.Mutex
	pending map[trace.TraceID]*pendingTrace
	kinds   [2][buckets]bucket // by kind index
}

// Kinds of roots, and their index in keeper.kinds.
var kindNames = [2]string{"request", "job"}

// floor mirrors, for the lock-free check, the current bucket of a kind:
// its start, and the duration a root must beat to be kept (-1 while the
// bucket has room).
type floor struct {
	start, min atomic.Int64
}

type pendingTrace struct {
	since   time.Time
	spans   []sdktrace.ReadOnlySpan
	dropped int
}

// bucket holds the slowest traces whose root ended in [start, start+width).
type bucket struct {
	start  time.Time
	traces []TraceSummary // at most keep
	min    time.Duration  // the shortest of traces, once full
}

func newKeeper(keep int, window time.Duration, maxSpans int, now func() time.Time) *keeper {
	return &keeper{
		keep: keep, maxSpans: maxSpans, width: max(window/buckets, time.Millisecond), now: now,
		pending: map[trace.TraceID]*pendingTrace{},
	}
}

var _ sdktrace.SpanProcessor = (*keeper)(nil)

func (k *keeper) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (k *keeper) Shutdown(context.Context) error                  { return nil }
func (k *keeper) ForceFlush(context.Context) error                { return nil }

// isRoot: the first span of the trace in this process.
func isRoot(s sdktrace.ReadOnlySpan) bool {
	p := s.Parent()
	return !p.IsValid() || p.IsRemote()
}

func (k *keeper) OnEnd(s sdktrace.ReadOnlySpan) {
	id := s.SpanContext().TraceID()
	if !isRoot(s) {
		k.mu.Lock()
		p := k.pending[id]
		if p == nil {
			if len(k.pending) >= maxPending {
				k.prune()
			}
			if len(k.pending) >= maxPending {
				k.mu.Unlock()
				return
			}
			p = &pendingTrace{since: k.now()}
			k.pending[id] = p
		}
		if len(p.spans) < k.maxSpans-1 {
			p.spans = append(p.spans, s)
		} else {
			p.dropped++
		}
		k.mu.Unlock()
		return
	}

	d := s.EndTime().Sub(s.StartTime())
	kind := 0
	if s.SpanKind() != trace.SpanKindServer {
		kind = 1
	}
	start := k.now().Truncate(k.width)
	if f := &k.floors[kind]; s.ChildSpanCount() == 0 && f.start.Load() == start.UnixNano() && int64(d) <= f.min.Load() {
		return // not among the slowest, and nothing pending to drop
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	p := k.pending[id]
	delete(k.pending, id)
	b := k.current(kind, start)
	if len(b.traces) >= k.keep && d <= b.min {
		return
	}
	var children []sdktrace.ReadOnlySpan
	dropped := 0
	if p != nil {
		children, dropped = p.spans, p.dropped
	}
	sum := summarize(s, children, kindNames[kind])
	sum.DroppedSpans = dropped
	if len(b.traces) >= k.keep {
		i := slices.IndexFunc(b.traces, func(t TraceSummary) bool { return t.Duration == b.min })
		b.traces = slices.Delete(b.traces, i, i+1)
	}
	b.traces = append(b.traces, sum)
	if len(b.traces) >= k.keep {
		b.min = slices.MinFunc(b.traces, func(a, b TraceSummary) int { return cmp.Compare(a.Duration, b.Duration) }).Duration
		k.floors[kind].min.Store(int64(b.min))
	}
}

// current returns the bucket of kind that starts at start, starting it
// (over the oldest) if it is new. k.mu is held.
func (k *keeper) current(kind int, start time.Time) *bucket {
	bs := &k.kinds[kind]
	i := int(start.UnixNano()/int64(k.width)) % buckets
	if !bs[i].start.Equal(start) {
		bs[i] = bucket{start: start}
		f := &k.floors[kind]
		f.min.Store(-1)
		f.start.Store(start.UnixNano())
		k.prune()
	}
	return &bs[i]
}

// prune drops pending children whose root has not ended within the
// window: it ran elsewhere, or is a stream that will not be kept.
func (k *keeper) prune() {
	cutoff := k.now().Add(-buckets * k.width)
	for id, p := range k.pending {
		if p.since.Before(cutoff) {
			delete(k.pending, id)
		}
	}
}

func (k *keeper) slowest() []TraceSummary {
	cutoff := k.now().Add(-buckets * k.width)
	var out []TraceSummary
	k.mu.Lock()
	for kind := range kindNames {
		bs := &k.kinds[kind]
		var all []TraceSummary
		for i := range bs {
			if !bs[i].start.IsZero() && bs[i].start.After(cutoff) {
				all = append(all, bs[i].traces...)
			}
		}
		slices.SortFunc(all, func(a, b TraceSummary) int { return cmp.Compare(b.Duration, a.Duration) })
		out = append(out, all[:min(len(all), k.keep)]...)
	}
	k.mu.Unlock()
	return out
}

// summarize builds the summary of a root span and its children: each
// span followed by its own children, in start order.
func summarize(root sdktrace.ReadOnlySpan, children []sdktrace.ReadOnlySpan, kind string) TraceSummary {
	sum := TraceSummary{
		TraceID: root.SpanContext().TraceID().String(), Kind: kind, Name: root.Name(),
		Start: root.StartTime(), Duration: root.EndTime().Sub(root.StartTime()),
	}
	if st := root.Status(); st.Code == codes.Error {
		sum.Error = st.Description
	}
	for _, kv := range root.Attributes() {
		if kv.Key == AttrRequestID {
			sum.RequestID = kv.Value.Emit()
		}
	}
	for _, l := range root.Links() {
		sum.LinkedTraceID = l.SpanContext.TraceID().String()
	}
	byParent := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, c := range children {
		byParent[c.Parent().SpanID()] = append(byParent[c.Parent().SpanID()], c)
	}
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		sum.Spans = append(sum.Spans, spanSummary(s, depth, sum.Start))
		kids := byParent[s.SpanContext().SpanID()]
		slices.SortFunc(kids, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
		for _, c := range kids {
			walk(c, depth+1)
		}
	}
	walk(root, 0)
	return sum
}

func spanSummary(s sdktrace.ReadOnlySpan, depth int, rootStart time.Time) SpanSummary {
	ss := SpanSummary{
		SpanID: s.SpanContext().SpanID().String(), Name: s.Name(), Depth: depth,
		Offset: s.StartTime().Sub(rootStart), Duration: s.EndTime().Sub(s.StartTime()),
	}
	if depth > 0 {
		ss.ParentID = s.Parent().SpanID().String()
	}
	if st := s.Status(); st.Code == codes.Error {
		ss.Error = st.Description
	}
	if attrs := s.Attributes(); len(attrs) > 0 {
		ss.Attrs = make(map[string]string, len(attrs))
		for _, kv := range attrs {
			ss.Attrs[string(kv.Key)] = kv.Value.Emit()
		}
	}
	return ss
}
