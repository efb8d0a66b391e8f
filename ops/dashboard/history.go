package dashboard

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ring keeps the last len(vals) points of a series, NaN for "no data".
type ring struct {
	vals []float64
	next int
	full bool
}

func newRing(n int) *ring {
	r := &ring{vals: make([]float64, n)}
	for i := range r.vals {
		r.vals[i] = math.NaN()
	}
	return r
}

func (r *ring) push(v float64) {
	r.vals[r.next] = v
	r.next = (r.next + 1) % len(r.vals)
	r.full = r.full || r.next == 0
}

// points returns every slot, oldest first; slots never written are NaN.
func (r *ring) points() []float64 {
	return append(slices.Clone(r.vals[r.next:]), r.vals[:r.next]...)
}

// last returns the newest n points, oldest first.
func (r *ring) last(n int) []float64 {
	p := r.points()
	return p[max(len(p)-n, 0):]
}

// history is the dashboard's memory: the snapshots spanning Recent, and
// one point per sample of every sparkline series and every query's p95
// over Window.
type history struct {
	interval, recent time.Duration
	summaryWindow    time.Duration // of the per-route summaries, to say so
	size             int           // points per series

	snaps   []snapshot // oldest is at or before newest - recent, when old enough
	latest  reading    // over the last interval
	current reading    // over Recent
	series  map[string]*ring
	queries map[string]*ring // query name → p95 per sample
}

func newHistory(o Options) *history {
	h := &history{
		interval: o.Interval, recent: o.Recent, summaryWindow: o.SummaryWindow,
		size:    int(o.Window / o.Interval),
		series:  map[string]*ring{},
		queries: map[string]*ring{},
	}
	for _, s := range metricSpecs {
		h.series[s.key] = newRing(h.size)
	}
	return h
}

func (h *history) add(s snapshot) {
	h.snaps = append(h.snaps, s)
	cut := s.at.Add(-h.recent)
	for len(h.snaps) > 2 && !h.snaps[1].at.After(cut) {
		h.snaps = h.snaps[1:]
	}
	if len(h.snaps) < 2 {
		h.latest, h.current = measure(s, s), measure(s, s)
	} else {
		h.latest = measure(h.snaps[len(h.snaps)-2], s)
		h.current = measure(h.snaps[0], s)
	}
	for _, spec := range metricSpecs {
		h.series[spec.key].push(spec.value(h.latest))
	}
	for q := range h.latest.queryP95 {
		if h.queries[q] == nil {
			h.queries[q] = newRing(h.size)
		}
	}
	for q, r := range h.queries {
		v, ok := h.latest.queryP95[q]
		if !ok {
			v = math.NaN()
		}
		r.push(v)
	}
}

// recentPoints is how many points cover Recent.
func (h *history) recentPoints() int {
	return max(int(h.recent/h.interval), 1)
}

// baseline is the median of a series before Recent: what is normal for
// it over the last Window, slow to move, and not yet moved by an
// incident that started within Recent. NaN with fewer than 3 points.
func (h *history) baseline(r *ring) float64 {
	if r == nil {
		return math.NaN()
	}
	p := r.points()
	p = p[:max(len(p)-h.recentPoints(), 0)]
	var vals []float64
	for _, v := range p {
		if !math.IsNaN(v) {
			vals = append(vals, v)
		}
	}
	if len(vals) < 3 {
		return math.NaN()
	}
	slices.Sort(vals)
	if n := len(vals); n%2 == 0 {
		return (vals[n/2-1] + vals[n/2]) / 2
	}
	return vals[len(vals)/2]
}

// growing reports whether a series rose over the last span: the newest
// point above the first, a positive least-squares slope and at least
// two steps in three not falling (a worker taking a batch may dip it).
// It also returns the first and last values. With whole set, a span
// not yet covered by history is not growing.
func (h *history) growing(key string, span time.Duration, whole bool) (bool, float64, float64) {
	n := int(span/h.interval) + 1
	pts := h.series[key].last(n)
	var xs, ys []float64
	for i, v := range pts {
		if !math.IsNaN(v) {
			xs, ys = append(xs, float64(i)), append(ys, v)
		}
	}
	if len(ys) < 3 || whole && len(ys) < n {
		return false, math.NaN(), math.NaN()
	}
	first, last := ys[0], ys[len(ys)-1]
	up := 0
	for i := 1; i < len(ys); i++ {
		if ys[i] >= ys[i-1] {
			up++
		}
	}
	return last > first && slope(xs, ys) > 0 && 3*up >= 2*(len(ys)-1), first, last
}

func slope(xs, ys []float64) float64 {
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(ys))
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

// unit says how to print a value.
type unit int

const (
	unitCount unit = iota
	unitRate       // per second
	unitRatio      // 0..1, printed as a percentage
	unitSeconds
	unitSecondsPerSecond // time spent waiting per second of wall time
	unitBytes
)

// metricSpec is one sparkline of a panel: its series is fed one point
// per sample from the last interval; its number is over Recent.
type metricSpec struct {
	component, key, label string
	unit                  unit
	value                 func(r reading) float64
}

// metricSpecs lists every panel's numbers in the order shown; the first
// of a component is its headline.
var metricSpecs = []metricSpec{
	{"http", "http.rate", "requests", unitRate, func(r reading) float64 { return ratio(r.requests, r.seconds) }},
	{"http", "http.errors", "5xx", unitRatio, func(r reading) float64 { return ratio(r.errors5xx, r.requests) }},
	{"http", "http.p50", "p50", unitSeconds, func(r reading) float64 { return r.p50 }},
	{"http", "http.p95", "p95", unitSeconds, func(r reading) float64 { return r.p95 }},
	{"http", "http.p99", "p99", unitSeconds, func(r reading) float64 { return r.p99 }},
	{"http", "http.inflight", "in flight", unitCount, func(r reading) float64 { return r.inFlight }},
	{"limiter", "limiter.rejected", "rejected", unitRatio, func(r reading) float64 { return ratio(r.limited, r.limiterTotal) }},
	{"limiter", "limiter.rate", "checks", unitRate, func(r reading) float64 { return ratio(r.limiterTotal, r.seconds) }},
	{"cache", "cache.hits", "hit ratio", unitRatio, func(r reading) float64 { return ratio(r.hits, r.hits+r.misses) }},
	{"cache", "cache.load", "load p95", unitSeconds, func(r reading) float64 { return r.loadP95 }},
	{"queue", "queue.depth", "queued", unitCount, func(r reading) float64 { return r.depth }},
	{"queue", "queue.oldest", "oldest", unitSeconds, func(r reading) float64 { return r.oldest }},
	{"queue", "queue.inflight", "running", unitCount, func(r reading) float64 { return r.queueInFlight }},
	{"workers", "workers.failures", "failed", unitCount, func(r reading) float64 { return r.jobsFailed }},
	{"workers", "workers.done", "done", unitRate, func(r reading) float64 { return ratio(r.jobsDone+r.jobsFailed, r.seconds) }},
	{"workers", "workers.p95", "job p95", unitSeconds, func(r reading) float64 { return r.jobP95 }},
	{"workers", "workers.dead", "dead letters", unitCount, func(r reading) float64 { return r.deadLettered }},
	{"database", "db.p95", "query p95", unitSeconds, func(r reading) float64 { return r.dbP95 }},
	{"database", "db.writerwait", "writer wait", unitSecondsPerSecond, func(r reading) float64 { return r.writerWait }},
	{"database", "db.busy", "busy", unitCount, func(r reading) float64 { return r.busy }},
	{"disk", "disk.free", "free", unitRatio, func(r reading) float64 { return ratio(r.diskFree, r.diskSize) }},
	{"disk", "disk.freebytes", "free bytes", unitBytes, func(r reading) float64 { return r.diskFree }},
	{"replicas", "replicas.in", "in rotation", unitCount, reading.replicasIn},
	{"replicas", "replicas.lagbytes", "max lag", unitBytes, func(r reading) float64 {
		return r.replicaMax(func(x replicaReading) float64 { return x.lagBytes })
	}},
	{"replicas", "replicas.lagseconds", "max replay lag", unitSeconds, func(r reading) float64 {
		return r.replicaMax(func(x replicaReading) float64 { return x.lagSeconds })
	}},
	{"backup", "backup.age", "last verified", unitSeconds, func(r reading) float64 { return r.backupAge }},
	{"backup", "backup.restore", "restore time", unitSeconds, func(r reading) float64 { return r.backupRestore }},
	{"backup", "backup.ok", "last passed", unitCount, func(r reading) float64 { return r.backupOK }},
}

// sparkWidth and sparkHeight are the sparklines' SVG viewBox.
const sparkWidth, sparkHeight = 240.0, 40.0

// sparkPath draws points (oldest first, one slot per sample, the newest
// at the right edge) as an SVG path, from 0 up to the largest point (or
// to 1 for ratios, which read better on a fixed scale). NaN leaves a
// gap. It returns "" when there is nothing to draw.
func sparkPath(pts []float64, u unit) string {
	top := 0.0
	for _, v := range pts {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			top = math.Max(top, v)
		}
	}
	if u == unitRatio {
		top = math.Max(top, 1)
	}
	if top == 0 {
		top = 1
	}
	var b strings.Builder
	pen := false
	step := sparkWidth / float64(max(len(pts)-1, 1))
	for i, v := range pts {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			pen = false
			continue
		}
		if pen {
			b.WriteByte('L')
		} else {
			b.WriteByte('M')
		}
		pen = true
		b.WriteString(strconv.FormatFloat(float64(i)*step, 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(sparkHeight-1-(sparkHeight-2)*v/top, 'f', 1, 64))
	}
	return b.String()
}
