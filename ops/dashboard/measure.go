package dashboard

import (
	"maps"
	"math"
	"slices"
	"strings"
)

// The metric names the dashboard reads, as the metrics package exposes
// them. A missing metric leaves its component "unknown", not healthy.
const (
	mHTTPRequests  = "onebox_http_requests_total"           // {route,method,code="2xx|4xx|5xx"}
	mHTTPDuration  = "onebox_http_request_duration_seconds" // histogram {route,method}, vmrange buckets
	mHTTPLatency   = "onebox_http_request_latency_seconds"  // summary {route,method,quantile}: per route
	mHTTPSlow      = "onebox_http_requests_slow_total"      // {route,method,threshold}: slower than the alert's p95
	mHTTPInFlight  = "onebox_http_in_flight_requests"
	mSSE           = "onebox_sse_connections"
	mLimiter       = "onebox_ratelimit_requests_total"    // {policy,result}
	mCacheRequests = "onebox_cache_requests_total"        // {cache,result="hit|miss"}
	mCacheLoad     = "onebox_cache_load_duration_seconds" // histogram {cache}
	mJobsQueued    = "onebox_jobs_queued"                 // {kind}
	mJobsInFlight  = "onebox_jobs_in_flight"
	mJobsDead      = "onebox_jobs_dead"
	mJobsOldest    = "onebox_jobs_oldest_age_seconds"
	mJobsDone      = "onebox_jobs_done_total" // {kind,outcome="ok|retry|dead"}
	mJobDuration   = "onebox_job_duration_seconds"
	mPipelineStep  = "onebox_pipeline_step_duration_seconds" // {step}
	mDBQuery       = "onebox_db_query_duration_seconds"      // histogram {query}
	mDBErrors      = "onebox_db_errors_total"                // {query,kind="busy|other"}
	mDBWriterWait  = "onebox_db_writer_wait_seconds_total"
	mDBConnections = "onebox_db_open_connections" // {pool}
	mDiskFree      = "onebox_disk_free_bytes"
	// PostgreSQL read replicas, each {replica="host:port"}: absent
	// without replicas, and so is their panel.
	mReplicaLagBytes   = "onebox_db_replica_lag_bytes"
	mReplicaLagSeconds = "onebox_db_replica_lag_seconds"
	mReplicaInRotation = "onebox_db_replica_in_rotation"
	mDiskSize          = "onebox_disk_size_bytes"
	// The scheduled backup verification: the interval wherever it is
	// configured (absent otherwise, and so is the panel), the rest on the
	// instance that runs it.
	mBackupInterval = "onebox_backup_verify_interval_seconds"
	mBackupAge      = "onebox_backup_verify_age_seconds"
	mBackupOK       = "onebox_backup_verify_ok"
	mBackupRestore  = "onebox_backup_verify_restore_seconds"
	quantileLabel   = "quantile"
	streamRouteMark = "/events" // long-lived SSE routes: their duration is not latency
)

// reading is what happened between two snapshots (counters as deltas,
// histograms as the observations in between) plus the newer snapshot's
// gauges. NaN means "no data".
type reading struct {
	seconds float64
	has     map[string]bool // component → its metrics were exposed

	requests, errors5xx float64
	// timed and slow are the requests of routes whose duration is
	// latency (not event streams), and those of them slower than the
	// alert threshold.
	timed, slow   float64
	p50, p95, p99 float64
	// est holds the quantiles read from histograms by metricSpec key
	// ("http.p95"), with the bucket each fell in.
	est           map[string]estimate
	routeP95      map[string]float64 // "GET /v1/users/:id" → seconds, from its summary
	inFlight, sse float64

	limiterTotal, limited, limiterErrors float64

	hits, misses float64
	loadP95      float64

	depth, oldest, queueInFlight float64

	jobsDone, jobsFailed, jobsDead float64 // finished attempts by outcome
	deadLettered                   float64 // gauge: dead jobs kept
	jobP95                         float64
	stepP95                        map[string]float64

	dbP95           float64
	queryP95        map[string]float64
	queryCount      map[string]float64
	queryTime       map[string]float64 // seconds spent in each query: count × latency
	busy, dbErrors  float64
	writerWait      float64 // seconds spent waiting for the writer, per second
	openConnections float64

	diskFree, diskSize float64

	replicas []replicaReading // by name

	// The backup verification's gauges; NaN where absent.
	backupInterval, backupAge, backupOK, backupRestore float64
	writer                                             writerReading // SQLite's
}

// replicaReading is one read replica as the newer snapshot shows it.
type replicaReading struct {
	name                 string
	lagBytes, lagSeconds float64
	inRotation           bool
}

// readReplicas reads the replicas' gauges, sorted by name.
func readReplicas(s snapshot) []replicaReading {
	lagBytes := s.by(mReplicaLagBytes, "replica", nil)
	lagSeconds := s.by(mReplicaLagSeconds, "replica", nil)
	in := s.by(mReplicaInRotation, "replica", nil)
	out := make([]replicaReading, 0, len(in))
	for _, name := range slices.Sorted(maps.Keys(in)) {
		out = append(out, replicaReading{name: name, lagBytes: lagBytes[name], lagSeconds: lagSeconds[name], inRotation: in[name] > 0})
	}
	return out
}

// replicasIn counts the replicas in rotation, NaN without replicas.
func (r reading) replicasIn() float64 {
	if len(r.replicas) == 0 {
		return math.NaN()
	}
	n := 0.0
	for _, x := range r.replicas {
		n += float64(btoi(x.inRotation))
	}
	return n
}

// replicaMax is the largest of a field over the replicas, NaN without
// replicas.
func (r reading) replicaMax(field func(replicaReading) float64) float64 {
	m := math.NaN()
	for _, x := range r.replicas {
		if v := field(x); math.IsNaN(m) || v > m {
			m = v
		}
	}
	return m
}

// measure reads the interval from a to b. Counter resets (a restart)
// count from zero.
func measure(a, b snapshot) reading {
	r := reading{seconds: b.at.Sub(a.at).Seconds(), has: map[string]bool{}, est: map[string]estimate{}}
	delta := func(name string, match func(sample) bool) (float64, bool) {
		nb, ok := b.sum(name, match)
		na, _ := a.sum(name, match)
		if nb < na {
			na = 0
		}
		return nb - na, ok
	}
	gauge := func(name string) float64 {
		v, ok := b.sum(name, nil)
		if !ok {
			return math.NaN()
		}
		return v
	}
	hist := func(name, group string, keep func(sample) bool) map[string]histogram {
		hb, ha := b.histograms(name, group, keep), a.histograms(name, group, keep)
		out := make(map[string]histogram, len(hb))
		for g, h := range hb {
			out[g] = h.sub(ha[g])
		}
		return out
	}
	p95s := func(hs map[string]histogram) map[string]float64 {
		out := make(map[string]float64, len(hs))
		for g, h := range hs {
			if h.total() > 0 {
				out[g] = h.quantile(0.95).v
			}
		}
		return out
	}
	quant := func(key string, h histogram, q float64) float64 {
		e := h.quantile(q)
		r.est[key] = e
		return e.v
	}

	// HTTP.
	var ok bool
	r.requests, ok = delta(mHTTPRequests, nil)
	r.has["http"] = ok
	r.errors5xx, _ = delta(mHTTPRequests, withLabel("code", "5xx"))
	notStream := func(s sample) bool { return !strings.Contains(s.label("route"), streamRouteMark) }
	r.timed, _ = delta(mHTTPRequests, notStream)
	r.slow, _ = delta(mHTTPSlow, notStream)
	// Routes merge only in a histogram; each route's own quantile comes
	// from its summary, which is exact for it.
	all := merge(values(hist(mHTTPDuration, "", notStream))...)
	r.p50, r.p95, r.p99 = quant("http.p50", all, 0.5), quant("http.p95", all, 0.95), quant("http.p99", all, 0.99)
	r.routeP95 = summaryP95(b, mHTTPLatency, notStream)
	r.inFlight, r.sse = gauge(mHTTPInFlight), gauge(mSSE)

	// Limiter: a result is an error, a rejection or (anything else) a pass.
	for res, n := range deltaBy(a, b, mLimiter, "result") {
		r.limiterTotal += n
		switch res {
		case "error", "failed", "fail":
			r.limiterErrors += n
		case "limited", "rejected", "denied", "blocked", "deny", "reject":
			r.limited += n
		}
	}
	_, r.has["limiter"] = b.metrics[mLimiter]

	// Cache.
	r.hits, r.has["cache"] = delta(mCacheRequests, withLabel("result", "hit"))
	r.misses, _ = delta(mCacheRequests, withLabel("result", "miss"))
	r.loadP95 = quant("cache.load", merge(values(hist(mCacheLoad, "", nil))...), 0.95)

	// Queue and workers.
	r.depth, r.oldest, r.queueInFlight = gauge(mJobsQueued), math.NaN(), gauge(mJobsInFlight)
	if v, ok := b.max(mJobsOldest); ok {
		r.oldest = v
	}
	r.has["queue"] = !math.IsNaN(r.depth)
	done := deltaBy(a, b, mJobsDone, "outcome")
	r.jobsDone, r.jobsFailed, r.jobsDead = done["ok"], done["retry"]+done["dead"], done["dead"]
	r.deadLettered = gauge(mJobsDead)
	_, r.has["workers"] = b.metrics[mJobsDone]
	r.has["workers"] = r.has["workers"] || !math.IsNaN(r.deadLettered)
	r.jobP95 = quant("workers.p95", merge(values(hist(mJobDuration, "", nil))...), 0.95)
	r.stepP95 = p95s(hist(mPipelineStep, "step", nil))

	// Database.
	queries := hist(mDBQuery, "query", nil)
	_, r.has["database"] = b.metrics[mDBQuery+"_bucket"]
	r.dbP95 = quant("db.p95", merge(values(queries)...), 0.95)
	r.queryP95 = p95s(queries)
	r.queryCount = make(map[string]float64, len(queries))
	for q, h := range queries {
		r.queryCount[q] = h.total()
	}
	r.queryTime = deltaBy(a, b, mDBQuery+"_sum", "query")
	r.busy, _ = delta(mDBErrors, withLabel("kind", "busy"))
	r.dbErrors, _ = delta(mDBErrors, func(s sample) bool { return s.label("kind") != "busy" })
	r.writerWait = math.NaN()
	if w, ok := delta(mDBWriterWait, nil); ok && r.seconds > 0 {
		r.writerWait = w / r.seconds
	}
	r.openConnections = gauge(mDBConnections)

	// Disk.
	r.diskFree, r.diskSize = gauge(mDiskFree), gauge(mDiskSize)
	r.has["disk"] = !math.IsNaN(r.diskFree) && r.diskSize > 0

	r.writer = readWriter(a, b)

	// Read replicas.
	r.replicas = readReplicas(b)
	r.has["replicas"] = len(r.replicas) > 0

	// Backups.
	r.backupInterval, r.backupAge = gauge(mBackupInterval), gauge(mBackupAge)
	r.backupOK, r.backupRestore = gauge(mBackupOK), gauge(mBackupRestore)
	r.has["backup"] = !math.IsNaN(r.backupInterval)
	return r
}

// deltaBy is a counter's increase from a to b per value of one label.
func deltaBy(a, b snapshot, name, labelName string) map[string]float64 {
	nb, na := b.by(name, labelName, nil), a.by(name, labelName, nil)
	out := make(map[string]float64, len(nb))
	for k, v := range nb {
		if old := na[k]; old <= v {
			v -= old
		}
		out[k] = v
	}
	return out
}

func values[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// summaryP95 reads each route's p95 from its summary: "GET /route" →
// seconds. Summaries of different routes cannot be merged, so they serve
// only per route.
func summaryP95(s snapshot, name string, keep func(sample) bool) map[string]float64 {
	routes := map[string]float64{}
	for _, x := range s.metrics[name] {
		if keep(x) && !math.IsNaN(x.value) && x.label(quantileLabel) == "0.95" {
			routes[x.label("method")+" "+x.label("route")] = x.value
		}
	}
	return routes
}

func ratio(part, whole float64) float64 {
	if whole <= 0 {
		return math.NaN()
	}
	return part / whole
}
