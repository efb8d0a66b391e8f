package dashboard

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Health is a component's state.
type Health string

const (
	Unknown  Health = "unknown" // its metrics are not exposed
	Healthy  Health = "healthy"
	Degraded Health = "degraded"
	Failing  Health = "failing"
)

// Bad reports whether h is degraded or failing.
func (h Health) Bad() bool { return h == Degraded || h == Failing }

func worst(a, b Health) Health {
	rank := map[Health]int{Unknown: 0, Healthy: 1, Degraded: 2, Failing: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// Thresholds decide when a component is degraded or failing. Zero
// fields take the defaults shown.
type Thresholds struct {
	// MinRequests: ratios over fewer events than this are not judged. 10.
	MinRequests float64
	// HTTPErrorRate: the 5xx share of requests at which HTTP is failing;
	// half of it is degraded. 0.05.
	HTTPErrorRate float64
	// HTTPP95: request p95 at which HTTP is degraded; four times it is
	// failing. 500ms.
	HTTPP95 time.Duration
	// LimiterRejectRate: the share of checks refused at which the limiter
	// is degraded (the limits may be too tight, or an attack). 0.5.
	LimiterRejectRate float64
	// CacheHitDrop: a hit ratio this far below its baseline is degraded.
	// 0.3.
	CacheHitDrop float64
	// CacheLoadP95: cache loads (misses) slower than this are degraded;
	// four times it is failing. 250ms.
	CacheLoadP95 time.Duration
	// QueueGrowth: a queue depth rising over this span is degraded. 5m.
	QueueGrowth time.Duration
	// QueueOldest: a job waiting longer than this is degraded; five times
	// it is failing. 1m.
	QueueOldest time.Duration
	// JobFailureRate: the share of attempts failing at which the workers
	// are degraded; 0.5 or more is failing. 0.1.
	JobFailureRate float64
	// BaselineFactor: a query or job p95 this many times its baseline
	// (the median of the last Window) is abnormal. 5.
	BaselineFactor float64
	// QueryFloor: a query p95 under this is never abnormal, whatever its
	// baseline (sub-millisecond queries double from noise). 10ms.
	QueryFloor time.Duration
	// QueryP95: an abnormal query p95 above this makes the database
	// failing; with no baseline yet, above it is degraded. 250ms.
	QueryP95 time.Duration
	// WriterWait: seconds per second spent waiting for the write lock at
	// which the database is degraded; four times it is failing. 0.5.
	WriterWait float64
	// WriterHold: a hold of the SQLite writer in progress this long is
	// degraded, four times it failing. 1s.
	WriterHold time.Duration
	// DiskFree: a free share below this is failing; below 1.5 times it,
	// degraded. 0.10.
	DiskFree float64
}

func (t Thresholds) withDefaults() Thresholds {
	t.MinRequests = orDefault(t.MinRequests, 10)
	t.HTTPErrorRate = orDefault(t.HTTPErrorRate, 0.05)
	t.HTTPP95 = orDefault(t.HTTPP95, 500*time.Millisecond)
	t.LimiterRejectRate = orDefault(t.LimiterRejectRate, 0.5)
	t.CacheHitDrop = orDefault(t.CacheHitDrop, 0.3)
	t.CacheLoadP95 = orDefault(t.CacheLoadP95, 250*time.Millisecond)
	t.QueueGrowth = orDefault(t.QueueGrowth, 5*time.Minute)
	t.QueueOldest = orDefault(t.QueueOldest, time.Minute)
	t.JobFailureRate = orDefault(t.JobFailureRate, 0.1)
	t.BaselineFactor = orDefault(t.BaselineFactor, 5)
	t.QueryFloor = orDefault(t.QueryFloor, 10*time.Millisecond)
	t.QueryP95 = orDefault(t.QueryP95, 250*time.Millisecond)
	t.WriterWait = orDefault(t.WriterWait, 0.5)
	t.WriterHold = orDefault(t.WriterHold, time.Second)
	t.DiskFree = orDefault(t.DiskFree, 0.10)
	return t
}

// node is one component of the dependency graph.
type node struct {
	name, title string
	dependsOn   []string
	judge       func(j *judging)
	// optional components have a panel only while their metrics exist:
	// read replicas, which most deployments do not have.
	optional bool
}

// graph is the dependency chain, in the order the panels show it.
var graph = []node{
	{"http", "HTTP", []string{"limiter", "cache", "database"}, judgeHTTP, false},
	{"limiter", "Rate limiter", nil, judgeLimiter, false},
	{"cache", "Cache", []string{"database"}, judgeCache, false},
	{"queue", "Queue", []string{"workers", "database"}, judgeQueue, false},
	{"workers", "Workers", []string{"database"}, judgeWorkers, false},
	{"database", "Database", []string{"disk"}, judgeDatabase, false},
	{"disk", "Disk", nil, judgeDisk, false},
	// A replica out of rotation sends its reads to the primary: they
	// still succeed, so nothing above depends on it.
	{"replicas", "Read replicas", nil, judgeReplicas, true},
	// Backups fail apart from serving: nothing depends on them, and only
	// an instance with ONEBOX_BACKUP_VERIFY_EVERY has the panel.
	{"backup", "Backups", nil, judgeBackup, true},
}

// because says, for an edge from a component to what it depends on, why
// trouble flows along it.
var because = map[[2]string]string{
	{"http", "limiter"}:     "requests wait on the rate limiter",
	{"http", "cache"}:       "requests wait on cache loads",
	{"http", "database"}:    "requests wait on the database",
	{"cache", "database"}:   "cache misses load from the database",
	{"queue", "workers"}:    "the workers are not keeping up",
	{"queue", "database"}:   "jobs wait on the database",
	{"workers", "database"}: "jobs wait on the database",
	{"database", "disk"}:    "the database waits on the disk",
}

func nodeByName(name string) node {
	i := slices.IndexFunc(graph, func(n node) bool { return n.name == name })
	return graph[i]
}

// depth is the longest path to a component from one nothing depends on:
// the deeper, the nearer the bottom of the stack.
func depth(name string) int {
	d := 0
	for _, n := range graph {
		if slices.Contains(n.dependsOn, name) {
			d = max(d, depth(n.name)+1)
		}
	}
	return d
}

// judging is one component's verdict in the making.
type judging struct {
	name     string
	health   Health
	evidence []string
	severity []Health // of each sentence of evidence

	h    *history
	r    reading // over Recent
	t    Thresholds
	plan func(query string) string
}

// flag raises the verdict to at least h, with a sentence saying why.
func (j *judging) flag(h Health, format string, args ...any) {
	j.health = worst(j.health, h)
	j.evidence = append(j.evidence, fmt.Sprintf(format, args...))
	j.severity = append(j.severity, h)
}

// sortEvidence puts the sentences behind the verdict first, keeping the
// order of the rest.
func (j *judging) sortEvidence() {
	idx := make([]int, len(j.evidence))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return cmp.Compare(btoi(j.severity[b] == j.health), btoi(j.severity[a] == j.health))
	})
	sorted := make([]string, len(idx))
	for i, k := range idx {
		sorted[i] = j.evidence[k]
	}
	j.evidence = sorted
}

// judgeAll judges every component from the history.
func judgeAll(h *history, t Thresholds, plan func(string) string) []judging {
	out := make([]judging, 0, len(graph))
	for _, n := range graph {
		j := judging{name: n.name, health: Unknown, h: h, r: h.current, t: t, plan: plan}
		if h.current.has[n.name] {
			j.health = Healthy
			n.judge(&j)
			j.sortEvidence()
		}
		out = append(out, j)
	}
	return out
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func judgeHTTP(j *judging) {
	r, t := j.r, j.t
	if r.requests >= t.MinRequests {
		er := r.errors5xx / r.requests
		switch {
		case er >= t.HTTPErrorRate:
			j.flag(Failing, "5xx %s of %s requests", pct(er), count(r.requests))
		case er >= t.HTTPErrorRate/2:
			j.flag(Degraded, "5xx %s of %s requests", pct(er), count(r.requests))
		}
	}
	if h := level(r.p95, t.HTTPP95.Seconds(), 4); h.Bad() {
		msg := fmt.Sprintf("p95 %s (%s)", quantText(r.est["http.p95"]), quantSource("http.p95", r.est["http.p95"], dur(j.h.recent)))
		if route, v := maxEntry(r.routeP95); route != "" {
			msg += fmt.Sprintf("; slowest route %s p95 %s (its summary, last %s)", route, secs(v), dur(j.h.summaryWindow))
		}
		j.flag(h, "%s", msg)
	}
}

func judgeLimiter(j *judging) {
	r, t := j.r, j.t
	if r.limiterErrors > 0 {
		j.flag(Degraded, "%s limiter errors: those requests were let through", count(r.limiterErrors))
	}
	if r.limiterTotal >= t.MinRequests && r.limited/r.limiterTotal >= t.LimiterRejectRate {
		j.flag(Degraded, "%s of %s checks refused (429)", pct(r.limited/r.limiterTotal), count(r.limiterTotal))
	}
}

func judgeCache(j *judging) {
	r, t := j.r, j.t
	if n := r.hits + r.misses; n >= t.MinRequests {
		hr := r.hits / n
		if base := j.h.baseline(j.h.series["cache.hits"]); !math.IsNaN(base) && hr <= base-t.CacheHitDrop {
			j.flag(Degraded, "hit ratio %s, normally %s", pct(hr), pct(base))
		}
	}
	if h := level(r.loadP95, t.CacheLoadP95.Seconds(), 4); h.Bad() {
		j.flag(h, "loads on a miss p95 %s (%s)", quantText(r.est["cache.load"]), quantSource("cache.load", r.est["cache.load"], dur(j.h.recent)))
	}
}

func judgeQueue(j *judging) {
	r, t := j.r, j.t
	if up, first, last := j.h.growing("queue.depth", t.QueueGrowth, false); up {
		j.flag(Degraded, "depth %s and rising, from %s %s ago", count(last), count(first), dur(t.QueueGrowth))
	}
	if h := level(r.oldest, t.QueueOldest.Seconds(), 5); h.Bad() {
		j.flag(h, "oldest job waiting %s", secs(r.oldest))
	}
}

func judgeWorkers(j *judging) {
	r, t := j.r, j.t
	if r.jobsDead > 0 {
		j.flag(Degraded, "jobs dead-lettered: %s", count(r.jobsDead))
	}
	if n := r.jobsDone + r.jobsFailed; n > 0 && r.jobsFailed > 0 {
		fr := r.jobsFailed / n
		switch {
		case fr >= 0.5 && n >= 2:
			j.flag(Failing, "%s of %s attempts failed", count(r.jobsFailed), count(n))
		case fr >= t.JobFailureRate:
			j.flag(Degraded, "%s of %s attempts failed", count(r.jobsFailed), count(n))
		}
	}
	if p := r.jobP95; !math.IsNaN(p) {
		if base := j.h.baseline(j.h.series["workers.p95"]); !math.IsNaN(base) && p >= t.BaselineFactor*base && p >= t.QueryFloor.Seconds() {
			msg := fmt.Sprintf("job p95 %s over the last %s, normally %s", quantText(r.est["workers.p95"]), dur(j.h.recent), secs(base))
			if step, v := maxEntry(r.stepP95); step != "" {
				msg += fmt.Sprintf("; slowest step %s p95 %s", step, secs(v))
			}
			j.flag(Degraded, "%s", msg)
		}
	}
}

// judgeDatabase compares each query's p95 with its own baseline: a query
// is abnormal at BaselineFactor times its normal p95 (and above
// QueryFloor); with no baseline yet, at QueryP95. Abnormal queries are
// ranked by the time spent in them over Recent (count × latency): a
// query run a thousand times 5 ms too slow costs more than one run once
// a second too slow, and is the one to fix first.
func judgeDatabase(j *judging) {
	r, t := j.r, j.t
	cause := judgeWriter(j)
	defer func() {
		// Who holds the writer is the headline whenever writes are slow:
		// the slow queries below are its victims.
		if cause == "" || !j.health.Bad() {
			return
		}
		if i := slices.Index(j.evidence, cause); i >= 0 {
			j.evidence = slices.Delete(j.evidence, i, i+1)
			j.severity = slices.Delete(j.severity, i, i+1)
		}
		j.evidence = slices.Insert(j.evidence, 0, cause)
		j.severity = slices.Insert(j.severity, 0, j.health)
	}()
	type slow struct {
		query        string
		p95, base    float64
		count, spent float64
	}
	var slows []slow
	for q, p := range r.queryP95 {
		base := j.h.baseline(j.h.queries[q])
		switch {
		case !math.IsNaN(base) && p >= t.BaselineFactor*math.Max(base, 1e-6) && p >= t.QueryFloor.Seconds():
			slows = append(slows, slow{q, p, base, r.queryCount[q], r.queryTime[q]})
		case math.IsNaN(base) && p >= t.QueryP95.Seconds():
			slows = append(slows, slow{q, p, base, r.queryCount[q], r.queryTime[q]})
		}
	}
	slices.SortFunc(slows, func(a, b slow) int {
		return cmp.Or(cmp.Compare(b.spent, a.spent), cmp.Compare(b.p95, a.p95), cmp.Compare(a.query, b.query))
	})
	for i, s := range slows {
		if i == 3 {
			j.flag(Degraded, "and %d more queries slower than normal", len(slows)-3)
			break
		}
		h := Degraded
		// From its vmrange histogram: within 7 %.
		msg := fmt.Sprintf("query %s p95 %s over the last %s", s.query, secs(s.p95), dur(j.h.recent))
		if !math.IsNaN(s.base) {
			msg += ", normally " + secs(s.base)
		}
		msg += fmt.Sprintf("; %s runs, %s spent", count(s.count), secs(s.spent))
		if !math.IsNaN(s.base) {
			if s.p95 >= t.QueryP95.Seconds() {
				h = Failing
			}
		}
		if plan := j.plan(s.query); plan != "" {
			msg += "; plan " + strings.Join(strings.Fields(strings.ReplaceAll(plan, "\n", "; ")), " ")
		}
		j.flag(h, "%s", msg)
	}
	if h := level(r.writerWait, t.WriterWait, 4); h.Bad() {
		j.flag(h, "writer wait %s/s (time spent queueing for the write lock)", secs(r.writerWait))
	}
	if r.busy > 0 {
		j.flag(Degraded, "%s busy errors (lock not taken in time)", count(r.busy))
	}
	if r.dbErrors > 0 {
		j.flag(Degraded, "%s query errors", count(r.dbErrors))
	}
}

func judgeDisk(j *judging) {
	r, t := j.r, j.t
	free := r.diskFree / r.diskSize
	desc := fmt.Sprintf("%s free (%s of %s)", pct(free), bytesize(r.diskFree), bytesize(r.diskSize))
	switch {
	case free < t.DiskFree:
		j.flag(Failing, "%s", desc)
	case free < 1.5*t.DiskFree:
		j.flag(Degraded, "%s", desc)
	}
}

// level grades v against a threshold: degraded at it, failing at
// factor times it; NaN (no data) is healthy.
func level(v, threshold, factor float64) Health {
	switch {
	case math.IsNaN(v) || v < threshold:
		return Healthy
	case v >= factor*threshold:
		return Failing
	}
	return Degraded
}

func maxEntry(m map[string]float64) (string, float64) {
	best, v := "", math.Inf(-1)
	for k, x := range m {
		if x > v || x == v && k < best {
			best, v = k, x
		}
	}
	return best, v
}

// Diagnosis reads the dependency chain backwards: which component is
// the likely root cause and which others suffer from it.
type Diagnosis struct {
	At      time.Time `json:"at"`
	Healthy bool      `json:"healthy"`
	// Summary is one sentence: "all healthy", or the root cause.
	Summary string `json:"summary"`
	// Root is the deepest unhealthy component whose own dependencies are
	// healthy; nil when nothing is unhealthy.
	Root *Finding `json:"root,omitempty"`
	// Downstream are the unhealthy components that depend, directly or
	// not, on Root, each with why.
	Downstream []Finding `json:"downstream,omitempty"`
	// Others are the separate problems: the other unhealthy components
	// with healthy dependencies, and those that suffer from them (with
	// Because).
	Others []Finding `json:"others,omitempty"`
	// Chain is every component in dependency order.
	Chain []Link `json:"chain"`
	// Drills are fault injections running now.
	Drills []string `json:"drills,omitempty"`
	// Latency is the headline quantiles, each with its source and
	// window: request p50, p95 and p99 over all routes, the slowest
	// routes' p95, the query p95.
	Latency []Number `json:"latency,omitempty"`
}

// Number is one figure of a diagnosis, formatted, with where it comes
// from.
type Number struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Source string `json:"source,omitempty"`
}

// Finding is one unhealthy component and its evidence.
type Finding struct {
	Link
	Evidence []string `json:"evidence"`
	// Because, for a downstream component, says how the root cause
	// reaches it: "queue depth 40 and rising because jobs wait on the
	// database".
	Because string `json:"because,omitempty"`
}

// Link is one component's place in the chain.
type Link struct {
	Component string    `json:"component"`
	Title     string    `json:"title"`
	State     Health    `json:"state"`
	Since     time.Time `json:"since"`
	DependsOn []string  `json:"depends_on,omitempty"`
}

func (d *Dashboard) diagnose(judged []judging, drills []string, now time.Time) Diagnosis {
	diag := Diagnosis{At: now, Healthy: true, Drills: drills}
	byName := map[string]judging{}
	for _, n := range graph {
		byName[n.name] = judging{name: n.name, health: Unknown}
	}
	for _, j := range judged {
		byName[j.name] = j
	}
	link := func(n node) Link {
		return Link{Component: n.name, Title: n.title, State: byName[n.name].health, Since: d.states[n.name].since, DependsOn: n.dependsOn}
	}
	finding := func(name string) Finding {
		return Finding{Link: link(nodeByName(name)), Evidence: byName[name].evidence}
	}
	var candidates []string
	for _, n := range graph {
		diag.Chain = append(diag.Chain, link(n))
		if !byName[n.name].health.Bad() {
			continue
		}
		diag.Healthy = false
		if !slices.ContainsFunc(n.dependsOn, func(dep string) bool { return byName[dep].health.Bad() }) {
			candidates = append(candidates, n.name)
		}
	}
	if diag.Healthy {
		diag.Summary = "all components healthy"
		if !slices.ContainsFunc(judged, func(j judging) bool { return j.health != Unknown }) {
			diag.Summary = "no data yet"
		}
		return diag
	}
	// The deepest first; at equal depth, failing before degraded.
	slices.SortStableFunc(candidates, func(a, b string) int {
		return cmp.Or(cmp.Compare(depth(b), depth(a)), cmp.Compare(btoi(byName[b].health == Failing), btoi(byName[a].health == Failing)))
	})
	root := finding(candidates[0])
	diag.Root = &root
	diag.Summary = fmt.Sprintf("likely root cause: %s %s", nodeByName(root.Component).title, root.State)
	if len(root.Evidence) > 0 {
		diag.Summary += ": " + root.Evidence[0]
	}
	// Every other unhealthy component suffers from the first cause it
	// reaches through unhealthy components only, or is a cause itself.
	bad := func(name string) bool { return byName[name].health.Bad() }
	for _, n := range graph {
		if n.name == root.Component || !bad(n.name) {
			continue
		}
		f := finding(n.name)
		for _, c := range candidates {
			path := pathTo(n.name, c, bad)
			if path == nil {
				continue
			}
			if len(path) > 1 {
				what := n.title + " " + string(f.State)
				if len(f.Evidence) > 0 {
					what = n.title + " " + f.Evidence[0]
				}
				f.Because = what + " because " + because[[2]string{path[0], path[1]}]
			}
			if c == root.Component {
				diag.Downstream = append(diag.Downstream, f)
			} else {
				diag.Others = append(diag.Others, f)
			}
			break
		}
	}
	return diag
}

// pathTo is the shortest dependency path from one component to
// another, both included, whose components in between all pass via; nil
// if there is none.
func pathTo(from, to string, via func(string) bool) []string {
	type step struct {
		name string
		path []string
	}
	queue := []step{{from, []string{from}}}
	seen := map[string]bool{from: true}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if s.name == to {
			return s.path
		}
		for _, dep := range nodeByName(s.name).dependsOn {
			if !seen[dep] && (dep == to || via(dep)) {
				seen[dep] = true
				queue = append(queue, step{dep, append(slices.Clone(s.path), dep)})
			}
		}
	}
	return nil
}

// judgeReplicas degrades while a replica is out of the read rotation
// (the store took it out: it failed, or lagged past its bound); the
// reads it would serve go to the primary meanwhile.
func judgeReplicas(j *judging) {
	out := 0
	for _, x := range j.r.replicas {
		if !x.inRotation {
			out++
			j.flag(Degraded, "replica %s is out of the read rotation (%s, %s behind)", x.name, bytesize(x.lagBytes), secs(x.lagSeconds))
		}
	}
	// judgeReplicas runs only while there are replicas: never 0 of 0.
	if out == len(j.r.replicas) {
		j.flag(Degraded, "no replica in rotation: the primary serves every read")
	}
}

// judgeBackup fails when the last scheduled backup verification failed,
// or none ended for twice the interval (the alerts' rules); on an
// instance that does not hold the schedule it says so and stays unknown.
func judgeBackup(j *judging) {
	r := j.r
	switch {
	case math.IsNaN(r.backupAge):
		j.health = Unknown
		j.flag(Unknown, "another instance holds the verification schedule (every %s); its dashboard has the results", secs(r.backupInterval))
	case r.backupOK == 0:
		j.flag(Failing, "the last backup verification failed (the log line \"backup verify failed\" says why; onebox backup verify runs one)")
	case r.backupAge > 2*r.backupInterval:
		j.flag(Failing, "no backup verification ended for %s, over twice the interval (%s)", secs(r.backupAge), secs(r.backupInterval))
	}
}
