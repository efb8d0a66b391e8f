package dashboard

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"time"

	"onebox/ops/advise"
)

// Series the advice reads besides the panels' own.
const (
	mDBWriterBusy  = "onebox_db_writer_busy_seconds_total"
	mDBBackend     = "onebox_db_backend_info" // {backend}
	mJobsWorkers   = "onebox_jobs_workers"    // {kind}
	mTopRejected   = "onebox_ratelimit_rejected_top"
	mProcessCPU    = "process_cpu_seconds_total"
	mGoMaxProcs    = "go_gomaxprocs"
	trendSpan      = 5 * time.Minute // the queue's oldest-age trend
	adviceTopKeys  = 5
	rejectedResult = "rejected"
)

// measurements reads what package advise judges from the history: the
// span of the panels' numbers (Recent), and the queue's trend over
// trendSpan (or what history holds of it).
func (h *history) measurements() advise.Measurements {
	if len(h.snaps) == 0 {
		return advise.Measurements{}
	}
	a, b := h.snaps[0], h.snaps[len(h.snaps)-1]
	r := h.current
	m := advise.Measurements{
		Window:      time.Duration(r.seconds * float64(time.Second)),
		CacheHits:   r.hits,
		CacheMisses: r.misses,
		BusyErrors:  r.busy,
		WriterWait:  r.writerWait,
		InFlight:    r.queueInFlight,
		OldestAge:   r.oldest,
		QueryTime:   math.NaN(), WriterBusy: math.NaN(), CacheLoadMean: math.NaN(),
		CPU: math.NaN(), JobsPerSecond: math.NaN(), ReplicaLag: math.NaN(),
	}
	for backend := range b.by(mDBBackend, "backend", nil) {
		m.Backend = backend
	}
	perSecond := func(name string) float64 {
		nb, ok := b.sum(name, nil)
		if !ok || r.seconds <= 0 {
			return math.NaN()
		}
		na, _ := a.sum(name, nil)
		if nb < na {
			na = 0
		}
		return (nb - na) / r.seconds
	}
	m.WriterBusy = perSecond(mDBWriterBusy)
	m.QueryTime = perSecond(mDBQuery + "_sum")
	if loads, ok := b.sum(mCacheLoad+"_count", nil); ok {
		before, _ := a.sum(mCacheLoad+"_count", nil)
		m.CacheLoadMean = ratio(perSecond(mCacheLoad+"_sum"), (loads-before)/r.seconds)
	}
	if cpu := perSecond(mProcessCPU); !math.IsNaN(cpu) {
		if procs, ok := b.sum(mGoMaxProcs, nil); ok && procs > 0 {
			m.CPU = cpu / procs
		}
	}
	if r.seconds > 0 && r.has["workers"] {
		m.JobsPerSecond = (r.jobsDone + r.jobsFailed) / r.seconds
	}
	if w, ok := b.sum(mJobsWorkers, nil); ok {
		m.Workers = w
	}
	m.OldestGrowing, m.OldestAgeBefore, _ = h.growing("queue.oldest", trendSpan, false)
	if math.IsNaN(m.OldestAgeBefore) {
		m.OldestAgeBefore = m.OldestAge
	}
	m.Replicas = int(r.replicasIn())
	m.ReplicaLag = r.replicaMax(func(x replicaReading) float64 { return x.lagSeconds })

	checks := deltaBy(a, b, mLimiter, "policy")
	rejected := map[string]float64{}
	for _, x := range b.metrics[mLimiter] {
		if x.label("result") == rejectedResult {
			rejected[x.label("policy")] = 0
		}
	}
	for p := range rejected {
		rejected[p] = deltaOf(a, b, mLimiter, func(s sample) bool { return s.label("policy") == p && s.label("result") == rejectedResult })
	}
	for _, p := range slices.Sorted(maps.Keys(checks)) {
		m.Limiter = append(m.Limiter, advise.Policy{Name: p, Checks: checks[p], Rejected: rejected[p], TopKeys: topKeys(a, b, p)})
	}
	return m
}

// deltaOf is the increase of the series of name that match, from a to b.
func deltaOf(a, b snapshot, name string, match func(sample) bool) float64 {
	nb, _ := b.sum(name, match)
	na, _ := a.sum(name, match)
	if nb < na {
		na = 0
	}
	return nb - na
}

// topKeys is a policy's most rejected keys within the span: each key's
// count now less its count at the span's start (a key that entered the
// top since counts whole: at most an over-count, as the sketch's own).
func topKeys(a, b snapshot, policy string) []advise.KeyCount {
	of := func(s sample) bool { return s.label("policy") == policy }
	now, before := b.by(mTopRejected, "key", of), a.by(mTopRejected, "key", of)
	var out []advise.KeyCount
	for k, v := range now {
		if old, ok := before[k]; ok && old <= v {
			v -= old
		}
		if v > 0 {
			out = append(out, advise.KeyCount{Key: k, Rejected: v})
		}
	}
	slices.SortFunc(out, func(x, y advise.KeyCount) int {
		return cmp.Or(cmp.Compare(y.Rejected, x.Rejected), cmp.Compare(x.Key, y.Key))
	})
	return out[:min(len(out), adviceTopKeys)]
}
