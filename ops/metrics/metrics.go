// Package metrics is onebox's Prometheus metrics, on
// github.com/VictoriaMetrics/metrics: one *metrics.Set owned by a
// Metrics value (never the library's default set), written in the
// Prometheus text format with the Go runtime and process metrics after
// it.
//
// The names below are a contract: dashboards and alerts read them, and
// README (Operations → Metrics) lists them. Every label value comes from
// a closed set (route templates, registered job kinds, the store's query
// names), so the number of series is bounded.
//
// A nil *Metrics is valid: every method does nothing, so turning metrics
// off costs a nil check on the hot path.
package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vm "github.com/VictoriaMetrics/metrics"

	"onebox/jobs"
	"onebox/store"
)

// Metric names.
const (
	// HTTPRequests counts finished requests: {route, method, code}, code
	// being the status class ("2xx"). route is the route template
	// ("/v1/users/:id"), "unmatched" for a path no route has.
	HTTPRequests = "onebox_http_requests_total"
	// HTTPRequestDuration is the latency histogram per {route, method},
	// in VictoriaMetrics' vmrange buckets (18 a decade, each 13.6 %
	// wide, only those with observations exposed): routes merge into a
	// quantile whose bucket's geometric middle is within 7 % of the
	// truth, which the 0.5–1 s of fixed le buckets could not promise.
	HTTPRequestDuration = "onebox_http_request_duration_seconds"
	// HTTPRequestLatency is the latency summary per {route, method}: the
	// quantiles 0.5, 0.95 and 0.99 over the last Options.SummaryWindow
	// (5 minutes).
	HTTPRequestLatency = "onebox_http_request_latency_seconds"
	// HTTPRequestsSlow counts requests slower than the alert threshold
	// per {route, method, threshold}, threshold being that one in seconds: the
	// share of requests above it is exact, not read from buckets, and is
	// what the p95 alert fires on (p95 > threshold exactly when more
	// than 5 % of requests are slower).
	HTTPRequestsSlow = "onebox_http_requests_slow_total"
	// HTTPInFlight is the number of requests being served.
	HTTPInFlight = "onebox_http_in_flight_requests"
	// RateLimitTopRejected is the rejections of each of the most rejected
	// keys (client addresses, user ids) per {policy, key}: at most
	// TopRejectedKeys keys a policy, counted since start by a
	// space-saving sketch of topKeysTracked keys, so the series stay
	// bounded whatever the clients. A key's count may be over by the
	// smallest count the sketch held when it came in; it is never under.
	RateLimitTopRejected = "onebox_ratelimit_rejected_top"
	// HTTPShed counts requests answered 503 at once because the bound of
	// requests handled at once (ONEBOX_MAX_IN_FLIGHT) was reached.
	HTTPShed = "onebox_http_shed_total"
	// RateLimitRequests counts limiter decisions: {policy, result
	// "allowed" or "rejected"}, and failures of the limiter backend
	// (result "error"), after which the request went through unlimited:
	// the limiter fails open.
	RateLimitRequests = "onebox_ratelimit_requests_total"
	// CacheRequests counts cache-aside lookups: {cache "profiles" or
	// "sessions", result "hit" or "miss"}.
	CacheRequests = "onebox_cache_requests_total"
	// CacheEvictions counts entries removed for size or expiry: {cache}.
	CacheEvictions = "onebox_cache_evictions_total"
	// CacheLoadDuration is the histogram of loads from the source after
	// a miss: {cache}. This and every other duration histogram below use
	// vmrange buckets, as HTTPRequestDuration does.
	CacheLoadDuration = "onebox_cache_load_duration_seconds"
	// JobsQueued, JobsInFlight, JobsDead and JobsOldestAge describe the
	// queue per {kind}, sampled every few seconds.
	JobsQueued    = "onebox_jobs_queued"
	JobsInFlight  = "onebox_jobs_in_flight"
	JobsDead      = "onebox_jobs_dead"
	JobsOldestAge = "onebox_jobs_oldest_age_seconds"
	// JobsWorkers is the Runner's concurrency per {kind} in this
	// process: 0 where it runs no workers (the web role).
	JobsWorkers = "onebox_jobs_workers"
	// JobsDone counts finished attempts: {kind, outcome "ok", "retry" or
	// "dead"}.
	JobsDone = "onebox_jobs_done_total"
	// JobsAbandoned is the number of abandoned job handlers still running,
	// which ignored their context past their timeout: {kind}.
	JobsAbandoned = "onebox_jobs_abandoned"
	// JobsLeaseLost counts attempts whose result the queue refused
	// because their message was received again after their visibility
	// lapsed (jobs.ErrLeaseLost): {kind}.
	JobsLeaseLost = "onebox_jobs_lease_lost_total"
	// JobDuration is the histogram of attempts: {kind}.
	JobDuration = "onebox_job_duration_seconds"
	// DBQueryDuration is the histogram of queries: {query}, the store's
	// name for it.
	DBQueryDuration = "onebox_db_query_duration_seconds"
	// DBErrors counts failed queries: {query, kind "busy" (the lock was
	// not had in time) or "other"}. Not found, conflicts and the like are
	// answers, not errors.
	DBErrors = "onebox_db_errors_total"
	// DBWriterWait is the total time callers waited for the writer
	// connection.
	DBWriterWait = "onebox_db_writer_wait_seconds_total"
	// DBWriterBusy is the total time the SQLite writer was held by a
	// write: per second of wall time, the writer's busy share.
	DBWriterBusy = "onebox_db_writer_busy_seconds_total"
	// DBBackend is 1 with the store's {backend "sqlite" or "postgres"}.
	DBBackend = "onebox_db_backend_info"
	// DBReaderWait is the total time reads waited for a reader
	// connection (every one busy).
	DBReaderWait = "onebox_db_reader_wait_seconds_total"
	// DBOpenConnections is the open connections per {pool "writer" or
	// "reader"}.
	DBOpenConnections = "onebox_db_open_connections"
	// PipelineStepDuration is the histogram of photo pipeline steps:
	// {step "decode", "moderate", "variants" or "publish"}.
	PipelineStepDuration = "onebox_pipeline_step_duration_seconds"
	// SSEConnections is the number of open event streams.
	SSEConnections = "onebox_sse_connections"
	// DiskFree and DiskSize are the file system of the data directory,
	// sampled.
	DiskFree = "onebox_disk_free_bytes"
	DiskSize = "onebox_disk_size_bytes"
	// ReplicaLagBytes and ReplicaLagSeconds are each PostgreSQL read
	// replica's lag behind the primary (pg_wal_lsn_diff, and
	// pg_stat_replication.replay_lag), sampled; ReplicaInRotation is 1
	// while it serves reads.
	ReplicaLagBytes   = "onebox_db_replica_lag_bytes"
	ReplicaLagSeconds = "onebox_db_replica_lag_seconds"
	ReplicaInRotation = "onebox_db_replica_in_rotation"
)

// Unmatched is the route label of requests no route matched.
const Unmatched = "unmatched"

// Other is the label value for anything outside a closed set.
const Other = "other"

var quantiles = []float64{0.5, 0.95, 0.99}

// Pipeline steps, as the pipeline names them.
var steps = []string{"decode", "moderate", "variants", "publish"}

// Options configure New.
type Options struct {
	// Kinds are the registered job kinds; a kind outside them is
	// counted as "other".
	Kinds []string
	// Workers is the Runner's concurrency per kind in this process,
	// exposed as JobsWorkers; kinds not in it show 0.
	Workers map[string]int
	// Logger gets sampling failures, at debug level. Default: discard.
	Logger *slog.Logger
	// SlowRequest is the latency above which a request counts in
	// HTTPRequestsSlow: ONEBOX_ALERT_P95. Default 500ms.
	SlowRequest time.Duration
	// SummaryWindow is the span of HTTPRequestLatency's quantiles.
	// Default 5m.
	SummaryWindow time.Duration
}

// Metrics holds every onebox series.
type Metrics struct {
	set       *vm.Set
	slow      float64 // seconds: Options.SlowRequest
	slowLabel string  // its threshold label
	window    time.Duration
	log       *slog.Logger
	inFlight  *vm.Gauge
	sse       *vm.Gauge
	shed      *vm.Counter

	jobs    map[string]*jobSeries // by kind, Other included; read-only after New
	steps   map[string]*vm.Histogram
	queries sync.Map // query name → *querySeries
	limits  sync.Map // policy → *[3]*vm.Counter (allowed, rejected, error)
	topKeys sync.Map // policy → *topKeys
	caches  sync.Map // cache name → *Cache

	writerWait *vm.FloatCounter
	writerBusy *vm.FloatCounter
	readerWait *vm.FloatCounter
	dbOpen     [2]*vm.Gauge // writer, reader
	diskFree   *vm.Gauge
	diskSize   *vm.Gauge

	backup backupVerify
	writer writer
}

// New returns a Metrics with an empty set. It turns on the library's
// HELP and TYPE lines, which apply process-wide: without them the
// exposition would have no types.
func New(o Options) *Metrics {
	vm.ExposeMetadata(true)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SlowRequest <= 0 {
		o.SlowRequest = 500 * time.Millisecond
	}
	if o.SummaryWindow <= 0 {
		o.SummaryWindow = 5 * time.Minute
	}
	s := vm.NewSet()
	m := &Metrics{
		set: s, log: o.Logger,
		slow: o.SlowRequest.Seconds(), slowLabel: strconv.FormatFloat(o.SlowRequest.Seconds(), 'g', -1, 64),
		window:     o.SummaryWindow,
		inFlight:   s.NewGauge(HTTPInFlight, nil),
		sse:        s.NewGauge(SSEConnections, nil),
		shed:       s.NewCounter(HTTPShed),
		jobs:       map[string]*jobSeries{},
		steps:      map[string]*vm.Histogram{},
		writerWait: s.NewFloatCounter(DBWriterWait),
		writerBusy: s.NewFloatCounter(DBWriterBusy),
		readerWait: s.NewFloatCounter(DBReaderWait),
		dbOpen: [2]*vm.Gauge{
			s.NewGauge(DBOpenConnections+`{pool="writer"}`, nil),
			s.NewGauge(DBOpenConnections+`{pool="reader"}`, nil),
		},
		diskFree: s.NewGauge(DiskFree, nil),
		diskSize: s.NewGauge(DiskSize, nil),
	}
	for _, k := range append(o.Kinds, Other) {
		if m.jobs[k] == nil {
			m.jobs[k] = newJobSeries(s, k)
			m.jobs[k].workers.Set(float64(o.Workers[k]))
		}
	}
	s.RegisterMetricsWriter(m.writeTopRejected)
	m.backup.now = time.Now
	s.RegisterMetricsWriter(m.writeBackupVerify)
	s.RegisterMetricsWriter(m.writeWriter)
	m.writer.holds = map[[2]string]*holderSeries{}
	m.writer.waited = map[string]*vm.FloatCounter{}
	m.writer.foreign = s.NewFloatCounter(DBWriterForeign)
	for _, st := range steps {
		m.steps[st] = s.NewHistogram(PipelineStepDuration + labels("step", st))
	}
	return m
}

// WritePrometheus writes every onebox series, then the Go runtime and
// process metrics, in the Prometheus text format.
func (m *Metrics) WritePrometheus(w io.Writer) {
	if m == nil {
		return
	}
	m.set.WritePrometheus(w)
	vm.WriteProcessMetrics(w)
}

// ServeHTTP serves WritePrometheus: GET /metrics on the admin listener.
// A nil Metrics answers 404.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m == nil {
		http.Error(w, "metrics are off (ONEBOX_METRICS=false)", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	m.WritePrometheus(w)
}

// labels formats Prometheus labels from name, value pairs: {a="x",b="y"}.
func labels(kv ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i])
		b.WriteString(`="`)
		b.WriteString(escape(kv[i+1]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

var escaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escape(v string) string { return escaper.Replace(v) }

// Route holds the series of one route template and method, so that the
// request path finds them with one lookup (the caller's) and no
// formatting. Its series appear at its first request.
type Route struct {
	m      *Metrics
	labels string // route="…",method="…"

	once     sync.Once
	duration *vm.Histogram
	latency  *vm.Summary
	slow     *vm.Counter
	codes    [6]atomic.Pointer[vm.Counter] // by status class; 0 for anything outside 1xx–5xx
}

// Route returns the series of a route template ("/v1/users/:id", or
// Unmatched) and method. Call it once per route, at start-up; it is nil
// for a nil Metrics.
func (m *Metrics) Route(method, route string) *Route {
	if m == nil {
		return nil
	}
	l := labels("route", route, "method", method)
	return &Route{m: m, labels: l[1 : len(l)-1]}
}

// Observe counts a finished request with its status and duration.
func (r *Route) Observe(status int, d time.Duration) {
	if r == nil {
		return
	}
	set := r.m.set
	r.once.Do(func() {
		r.duration = set.GetOrCreateHistogram(HTTPRequestDuration + "{" + r.labels + "}")
		r.latency = set.GetOrCreateSummaryExt(HTTPRequestLatency+"{"+r.labels+"}", r.m.window, quantiles)
		r.slow = set.GetOrCreateCounter(HTTPRequestsSlow + "{" + r.labels + `,threshold="` + r.m.slowLabel + `"}`)
	})
	s := d.Seconds()
	r.duration.Update(s)
	r.latency.Update(s)
	if s > r.m.slow {
		r.slow.Inc()
	}
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	c := r.codes[class].Load()
	if c == nil {
		code := Other
		if class > 0 {
			code = strconv.Itoa(class) + "xx"
		}
		c = set.GetOrCreateCounter(HTTPRequests + "{" + r.labels + `,code="` + code + `"}`)
		r.codes[class].Store(c)
	}
	c.Inc()
}

// InFlight adds delta (1 when a request starts, -1 when it ends) to the
// requests being served.
func (m *Metrics) InFlight(delta int) {
	if m != nil {
		m.inFlight.Add(float64(delta))
	}
}

// Shed counts a request refused because too many were being handled.
func (m *Metrics) Shed() {
	if m != nil {
		m.shed.Inc()
	}
}

// SSE adds delta to the open event streams.
func (m *Metrics) SSE(delta int) {
	if m != nil {
		m.sse.Add(float64(delta))
	}
}

// RateLimit counts one decision of the limiter under policy for key
// (the client the policy counts by); a rejection also counts for key
// among the policy's most rejected.
func (m *Metrics) RateLimit(policy, key string, allowed bool) {
	if m == nil {
		return
	}
	if allowed {
		m.limitSeries(policy)[0].Inc()
		return
	}
	m.limitSeries(policy)[1].Inc()
	v, ok := m.topKeys.Load(policy)
	if !ok {
		v, _ = m.topKeys.LoadOrStore(policy, &topKeys{counts: map[string]uint64{}})
	}
	v.(*topKeys).add(key)
}

// RateLimitFailed counts one failure of the limiter backend under
// policy: the request was let through without a decision.
func (m *Metrics) RateLimitFailed(policy string) {
	if m != nil {
		m.limitSeries(policy)[2].Inc()
	}
}

func (m *Metrics) limitSeries(policy string) *[3]*vm.Counter {
	v, ok := m.limits.Load(policy)
	if !ok {
		v, _ = m.limits.LoadOrStore(policy, &[3]*vm.Counter{
			m.set.GetOrCreateCounter(RateLimitRequests + labels("policy", policy, "result", "allowed")),
			m.set.GetOrCreateCounter(RateLimitRequests + labels("policy", policy, "result", "rejected")),
			m.set.GetOrCreateCounter(RateLimitRequests + labels("policy", policy, "result", "error")),
		})
	}
	return v.(*[3]*vm.Counter)
}

// Cache is the series of one cache-aside ("profiles", "sessions"); its
// methods fit cache.AsideOptions' hooks. A nil Cache does nothing.
type Cache struct {
	hits, misses, evictions *vm.Counter
	load                    *vm.Histogram
}

// Cache returns the series of the cache named name; nil for a nil
// Metrics.
func (m *Metrics) Cache(name string) *Cache {
	if m == nil {
		return nil
	}
	if c, ok := m.caches.Load(name); ok {
		return c.(*Cache)
	}
	c, _ := m.caches.LoadOrStore(name, &Cache{
		hits:      m.set.GetOrCreateCounter(CacheRequests + labels("cache", name, "result", "hit")),
		misses:    m.set.GetOrCreateCounter(CacheRequests + labels("cache", name, "result", "miss")),
		evictions: m.set.GetOrCreateCounter(CacheEvictions + labels("cache", name)),
		load:      m.set.GetOrCreateHistogram(CacheLoadDuration + labels("cache", name)),
	})
	return c.(*Cache)
}

// Lookup counts a hit or a miss.
func (c *Cache) Lookup(hit bool) {
	switch {
	case c == nil:
	case hit:
		c.hits.Inc()
	default:
		c.misses.Inc()
	}
}

// Load records the duration of a load from the source.
func (c *Cache) Load(d time.Duration, _ error) {
	if c != nil {
		c.load.Update(d.Seconds())
	}
}

// Evicted counts an entry removed for size or expiry.
func (c *Cache) Evicted() {
	if c != nil {
		c.evictions.Inc()
	}
}

// jobSeries is the series of one job kind.
type jobSeries struct {
	done                           map[string]*vm.Counter // by outcome
	duration                       *vm.Histogram
	queued, inFlight, dead, oldest *vm.Gauge
	abandoned, workers             *vm.Gauge
	leaseLost                      *vm.Counter
}

func newJobSeries(s *vm.Set, kind string) *jobSeries {
	js := &jobSeries{
		done:      map[string]*vm.Counter{},
		duration:  s.NewHistogram(JobDuration + labels("kind", kind)),
		queued:    s.NewGauge(JobsQueued+labels("kind", kind), nil),
		inFlight:  s.NewGauge(JobsInFlight+labels("kind", kind), nil),
		dead:      s.NewGauge(JobsDead+labels("kind", kind), nil),
		oldest:    s.NewGauge(JobsOldestAge+labels("kind", kind), nil),
		abandoned: s.NewGauge(JobsAbandoned+labels("kind", kind), nil),
		workers:   s.NewGauge(JobsWorkers+labels("kind", kind), nil),
		leaseLost: s.NewCounter(JobsLeaseLost + labels("kind", kind)),
	}
	for _, o := range []string{"ok", "retry", "dead"} {
		js.done[o] = s.NewCounter(JobsDone + labels("kind", kind, "outcome", o))
	}
	return js
}

func (m *Metrics) job(kind string) *jobSeries {
	if js, ok := m.jobs[kind]; ok {
		return js
	}
	return m.jobs[Other]
}

// JobDone counts a finished attempt: jobs.RunnerOptions.OnDone.
func (m *Metrics) JobDone(kind string, d time.Duration, outcome string) {
	if m == nil {
		return
	}
	js := m.job(kind)
	if c, ok := js.done[outcome]; ok {
		c.Inc()
	}
	if d > 0 { // a message swept for having no handler never ran
		js.duration.Update(d.Seconds())
	}
}

// JobAbandoned moves the abandoned handlers' gauge by delta:
// jobs.RunnerOptions.OnAbandoned.
func (m *Metrics) JobAbandoned(kind string, delta int) {
	if m == nil {
		return
	}
	m.job(kind).abandoned.Add(float64(delta))
}

// JobLeaseLost counts an attempt whose late result was discarded:
// jobs.RunnerOptions.OnLeaseLost.
func (m *Metrics) JobLeaseLost(kind string) {
	if m == nil {
		return
	}
	m.job(kind).leaseLost.Inc()
}

// PipelineStep records one step of a photo job: pipeline.Options.OnStep.
func (m *Metrics) PipelineStep(_ context.Context, step string, d time.Duration) {
	if m == nil {
		return
	}
	if h, ok := m.steps[step]; ok {
		h.Update(d.Seconds())
	}
}

// querySeries is the series of one query name.
type querySeries struct {
	duration    *vm.Histogram
	busy, other *vm.Counter
}

// Query records a finished query: the store's OnQuery hook.
func (m *Metrics) Query(_ context.Context, ev store.QueryEvent) {
	if m == nil {
		return
	}
	v, ok := m.queries.Load(ev.Name)
	if !ok {
		v, _ = m.queries.LoadOrStore(ev.Name, &querySeries{
			duration: m.set.GetOrCreateHistogram(DBQueryDuration + labels("query", ev.Name)),
			busy:     m.set.GetOrCreateCounter(DBErrors + labels("query", ev.Name, "kind", "busy")),
			other:    m.set.GetOrCreateCounter(DBErrors + labels("query", ev.Name, "kind", "other")),
		})
	}
	q := v.(*querySeries)
	q.duration.Update(ev.Duration.Seconds())
	switch {
	case !store.Failed(ev.Err):
	case isBusy(ev.Err):
		q.busy.Inc()
	default:
		q.other.Inc()
	}
}

func isBusy(err error) bool { return errors.Is(err, store.ErrBusy) }

// QueueStats sets the queue gauges from a snapshot; kinds outside the
// registered ones add up under "other".
func (m *Metrics) QueueStats(st jobs.Stats) {
	if m == nil {
		return
	}
	type sums struct {
		queued, inFlight, dead int
		oldest                 time.Duration
	}
	by := make(map[*jobSeries]*sums, len(m.jobs))
	for _, js := range m.jobs {
		by[js] = &sums{}
	}
	for kind, ks := range st.Kinds {
		s := by[m.job(kind)]
		s.queued += ks.Queued
		s.inFlight += ks.InFlight
		s.dead += ks.Dead
		s.oldest = max(s.oldest, ks.OldestAge)
	}
	for js, s := range by {
		js.queued.Set(float64(s.queued))
		js.inFlight.Set(float64(s.inFlight))
		js.dead.Set(float64(s.dead))
		js.oldest.Set(s.oldest.Seconds())
	}
}
