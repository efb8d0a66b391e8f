// Package advise says, from one instance's live measurements, whether
// each step of scaling out is justified now: keeping the cache, moving
// SQLite to PostgreSQL, adding read replicas, more workers, a worker
// role, an external queue broker, and what to do about rate-limit
// rejections. Every verdict names its threshold and the numbers that
// decided it; README ("Scaling out") gives the benchmark figure behind
// each threshold.
//
// It judges plain numbers (Measurements); the dashboard fills them from
// the metrics it samples, and `onebox ops advise` prints the result.
package advise

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Measurements are the numbers the verdicts read, over one window
// (counts are within it, rates per second of it). NaN, or a zero count,
// means not measured: its verdict is Unknown.
type Measurements struct {
	Window  time.Duration
	Backend string // "sqlite", "postgres", or "" when not exposed

	// The cache: lookups, and the mean time of a load from the store
	// after a miss, which is what a hit saves.
	CacheHits, CacheMisses float64
	CacheLoadMean          float64 // seconds

	// The database: seconds spent in queries per second (all queries, on
	// the primary unless replicas serve some), and the SQLite writer's
	// busy share and lock waits, each in seconds per second, and its
	// lock timeouts (SQLITE_BUSY) in the window.
	QueryTime  float64
	WriterBusy float64
	WriterWait float64
	BusyErrors float64
	// Replicas in rotation now, and the largest replay lag, in seconds.
	Replicas   int
	ReplicaLag float64

	// The queue: the oldest waiting job's age now and at the start of
	// the trend span, whether it grew over that span, jobs running and
	// the workers this process has for them, and jobs finished a second.
	OldestAge, OldestAgeBefore float64
	OldestGrowing              bool
	InFlight, Workers          float64
	JobsPerSecond              float64
	// CPU is this process's share of the machine's cores, 0 to 1.
	CPU float64

	Limiter []Policy
}

// Policy is one rate-limit policy's decisions in the window, with the
// keys most rejected in it.
type Policy struct {
	Name             string
	Checks, Rejected float64
	TopKeys          []KeyCount // most rejected first
}

// KeyCount is one limiter key's rejections in the window.
type KeyCount struct {
	Key      string  `json:"key"`
	Rejected float64 `json:"rejected"`
}

// Thresholds decide the verdicts; README explains each default with the
// benchmark figure behind it. Zero fields take the defaults.
type Thresholds struct {
	// CacheHitRatio: the cache pays at or above it.
	CacheHitRatio float64
	// WriterBusy: the SQLite writer's busy share at or above which one
	// writer is the limit (PostgreSQL is justified).
	WriterBusy float64
	// WriterWait: seconds waited for the writer per second at or above
	// which writes queue (PostgreSQL is justified).
	WriterWait float64
	// PrimaryLoad: seconds of queries per second on the PostgreSQL
	// primary at or above which replicas are justified.
	PrimaryLoad float64
	// WorkerUtilisation: running jobs over workers at or above which the
	// workers are saturated.
	WorkerUtilisation float64
	// CPU: the process's share of the cores at or above which the API
	// and the workers compete (a worker role is justified).
	CPU float64
	// BrokerShare: jobs a second over the backend's measured streaming
	// capacity (SQLiteQueueCapacity, PostgresQueueCapacity) at or above
	// which an external broker is justified.
	BrokerShare float64
	// SQLiteQueueCapacity and PostgresQueueCapacity are the jobs a
	// second bench/queue's stream scenario measured on each backend.
	SQLiteQueueCapacity, PostgresQueueCapacity float64
	// Rejected: the share of a policy's checks rejected at or above which
	// it deserves a look.
	Rejected float64
	// OneKeyShare: the share of a policy's rejections one key has at or
	// above which it is one abusive client, not limits too tight.
	OneKeyShare float64
}

// Defaults; README's "Scaling out" says where each comes from.
var Defaults = Thresholds{
	CacheHitRatio:         0.5,
	WriterBusy:            0.7,
	WriterWait:            0.5,
	PrimaryLoad:           1.5,
	WorkerUtilisation:     0.8,
	CPU:                   0.7,
	BrokerShare:           0.5,
	SQLiteQueueCapacity:   4500,
	PostgresQueueCapacity: 500,
	Rejected:              0.01,
	OneKeyShare:           0.5,
}

func (t Thresholds) withDefaults() Thresholds {
	or := func(v, d float64) float64 {
		if v <= 0 {
			return d
		}
		return v
	}
	d := Defaults
	return Thresholds{
		CacheHitRatio: or(t.CacheHitRatio, d.CacheHitRatio), WriterBusy: or(t.WriterBusy, d.WriterBusy),
		WriterWait: or(t.WriterWait, d.WriterWait), PrimaryLoad: or(t.PrimaryLoad, d.PrimaryLoad),
		WorkerUtilisation: or(t.WorkerUtilisation, d.WorkerUtilisation), CPU: or(t.CPU, d.CPU),
		BrokerShare:         or(t.BrokerShare, d.BrokerShare),
		SQLiteQueueCapacity: or(t.SQLiteQueueCapacity, d.SQLiteQueueCapacity), PostgresQueueCapacity: or(t.PostgresQueueCapacity, d.PostgresQueueCapacity),
		Rejected: or(t.Rejected, d.Rejected), OneKeyShare: or(t.OneKeyShare, d.OneKeyShare),
	}
}

// Answer is a verdict's yes or no.
type Answer string

const (
	Yes     Answer = "yes"     // the step is justified now
	No      Answer = "no"      // it is not
	Unknown Answer = "unknown" // not measured (not exposed, or no traffic)
)

// Step names.
const (
	StepCache      = "cache"
	StepPostgres   = "postgres"
	StepReplicas   = "replicas"
	StepWorkers    = "workers"
	StepWorkerRole = "worker-role"
	StepBroker     = "broker"
	StepLimiter    = "limiter"
)

// Verdict is one step's answer.
type Verdict struct {
	Step      string   `json:"step"`
	Question  string   `json:"question"`
	Answer    Answer   `json:"answer"`
	Because   string   `json:"because"`   // the deciding numbers, in a sentence
	Threshold string   `json:"threshold"` // what it was held against
	Numbers   []Number `json:"numbers"`
	// Keys, for the limiter, are each policy's most rejected keys.
	Keys []PolicyKeys `json:"keys,omitempty"`
}

// Number is one measurement behind a verdict.
type Number struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// PolicyKeys is one policy's most rejected keys in the window.
type PolicyKeys struct {
	Policy string     `json:"policy"`
	Keys   []KeyCount `json:"keys"`
}

// Advice is every verdict at one time.
type Advice struct {
	At       time.Time `json:"at"`
	Window   string    `json:"window"` // what the numbers span, "1m"
	Verdicts []Verdict `json:"verdicts"`
}

// Advise judges m against t (zero fields: Defaults), one verdict per
// step, in the order of the steps above.
func Advise(m Measurements, t Thresholds) []Verdict {
	t = t.withDefaults()
	return []Verdict{cache(m, t), postgres(m, t), replicas(m, t), workers(m, t), workerRole(m, t), broker(m, t), limiter(m, t)}
}

func cache(m Measurements, t Thresholds) Verdict {
	v := Verdict{Step: StepCache, Question: "Does the cache pay?",
		Threshold: fmt.Sprintf("hit ratio ≥ %s", pct(t.CacheHitRatio))}
	lookups := m.CacheHits + m.CacheMisses
	if lookups <= 0 {
		return unknown(v, "no cache lookups in the window (cache off, or no reads)")
	}
	ratio := m.CacheHits / lookups
	perSec := rate(m.CacheHits, m.Window)
	saved := perSec * m.CacheLoadMean
	v.Numbers = []Number{{"hit ratio", pct(ratio)}, {"hits", fmt.Sprintf("%.1f/s", perSec)},
		{"load from the store", secs(m.CacheLoadMean)}, {"database time saved", fmt.Sprintf("%s/s", secs(saved))}}
	v.Answer = answer(ratio >= t.CacheHitRatio)
	if v.Answer == Yes {
		v.Because = fmt.Sprintf("%s of lookups hit, saving the database %s of work a second", pct(ratio), secs(saved))
	} else {
		v.Because = fmt.Sprintf("only %s of lookups hit (saving %s/s): most reads pay the lookup and the load; a longer TTL or a larger cache, or none", pct(ratio), secs(saved))
	}
	return v
}

func postgres(m Measurements, t Thresholds) Verdict {
	v := Verdict{Step: StepPostgres, Question: "Move SQLite to PostgreSQL?",
		Threshold: fmt.Sprintf("writer busy ≥ %s, or writer wait ≥ %s/s, or any lock timeout", pct(t.WriterBusy), secs(t.WriterWait))}
	switch {
	case m.Backend == "postgres":
		v.Answer, v.Because = No, "already on PostgreSQL"
		return v
	case m.Backend != "sqlite" || math.IsNaN(m.WriterBusy):
		return unknown(v, "the store's backend or the writer's busy time is not exposed")
	}
	v.Numbers = []Number{{"writer busy", pct(m.WriterBusy)}, {"writer wait", secs(m.WriterWait) + "/s"},
		{"lock timeouts", fmt.Sprintf("%.0f", m.BusyErrors)}}
	over := m.WriterBusy >= t.WriterBusy || m.WriterWait >= t.WriterWait || m.BusyErrors > 0
	v.Answer = answer(over)
	if over {
		v.Because = fmt.Sprintf("the one writer is busy %s of the time and writes wait %s a second (%.0f lock timeouts): writes queue for SQLite's single writer", pct(m.WriterBusy), secs(m.WriterWait), m.BusyErrors)
	} else {
		v.Because = fmt.Sprintf("the writer is busy %s of the time and writes wait %s a second: SQLite has room, and each write costs several times more on PostgreSQL", pct(m.WriterBusy), secs(m.WriterWait))
	}
	return v
}

func replicas(m Measurements, t Thresholds) Verdict {
	v := Verdict{Step: StepReplicas, Question: "Add read replicas?",
		Threshold: fmt.Sprintf("query time on the PostgreSQL primary ≥ %.1f s/s", t.PrimaryLoad)}
	if m.Backend == "sqlite" {
		v.Answer, v.Because = No, "SQLite has no replicas: PostgreSQL first"
		return v
	}
	if m.Backend != "postgres" || math.IsNaN(m.QueryTime) {
		return unknown(v, "the store's backend or its query time is not exposed")
	}
	v.Numbers = []Number{{"query time", fmt.Sprintf("%.2f s/s", m.QueryTime)}, {"replicas in rotation", fmt.Sprint(m.Replicas)}}
	if m.Replicas > 0 && !math.IsNaN(m.ReplicaLag) {
		v.Numbers = append(v.Numbers, Number{"max replay lag", secs(m.ReplicaLag)})
	}
	v.Answer = answer(m.QueryTime >= t.PrimaryLoad)
	if v.Answer == Yes {
		v.Because = fmt.Sprintf("queries keep %.2f connections of the primary busy all the time: move the reads that may be stale to replicas on hosts of their own", m.QueryTime)
	} else {
		v.Because = fmt.Sprintf("queries keep %.2f connections busy on average: the primary keeps up", m.QueryTime)
	}
	return v
}

// utilisation is running jobs over workers, NaN without workers.
func (m Measurements) utilisation() float64 {
	if m.Workers <= 0 || math.IsNaN(m.InFlight) {
		return math.NaN()
	}
	return m.InFlight / m.Workers
}

func queueNumbers(m Measurements) []Number {
	return []Number{{"oldest job", fmt.Sprintf("%s (was %s)", secs(m.OldestAge), secs(m.OldestAgeBefore))},
		{"running / workers", fmt.Sprintf("%.0f / %.0f (%s)", m.InFlight, m.Workers, pct(m.utilisation()))},
		{"done", fmt.Sprintf("%.1f jobs/s", m.JobsPerSecond)}}
}

func workers(m Measurements, t Thresholds) Verdict {
	v := Verdict{Step: StepWorkers, Question: "More workers?",
		Threshold: fmt.Sprintf("oldest job's age growing and workers ≥ %s busy", pct(t.WorkerUtilisation))}
	u := m.utilisation()
	if math.IsNaN(u) || math.IsNaN(m.OldestAge) {
		return unknown(v, "no workers in this process, or the queue is not sampled")
	}
	v.Numbers = queueNumbers(m)
	v.Answer = answer(m.OldestGrowing && u >= t.WorkerUtilisation)
	switch {
	case v.Answer == Yes:
		v.Because = fmt.Sprintf("the oldest job went from %s to %s while %s of the workers ran: the queue grows faster than they drain it", secs(m.OldestAgeBefore), secs(m.OldestAge), pct(u))
	case m.OldestGrowing:
		v.Because = fmt.Sprintf("the oldest job is getting older (%s), but only %s of the workers run: look at the jobs, not their number", secs(m.OldestAge), pct(u))
	default:
		v.Because = fmt.Sprintf("the oldest job (%s) is not getting older; %s of the workers run", secs(m.OldestAge), pct(u))
	}
	return v
}

func workerRole(m Measurements, t Thresholds) Verdict {
	v := Verdict{Step: StepWorkerRole, Question: "Run workers apart from the API (a worker role)?",
		Threshold: fmt.Sprintf("more workers justified and the process's CPU ≥ %s", pct(t.CPU))}
	u := m.utilisation()
	if math.IsNaN(u) || math.IsNaN(m.CPU) || math.IsNaN(m.OldestAge) {
		return unknown(v, "no workers in this process, or its CPU is not exposed")
	}
	more := m.OldestGrowing && u >= t.WorkerUtilisation
	v.Numbers = append(queueNumbers(m), Number{"process CPU", pct(m.CPU)})
	v.Answer = answer(more && m.CPU >= t.CPU)
	switch {
	case v.Answer == Yes:
		v.Because = fmt.Sprintf("the workers are saturated and the process uses %s of the cores: more workers here would take CPU from the API", pct(m.CPU))
	case more:
		v.Because = fmt.Sprintf("the workers are saturated but the process uses %s of the cores: raise the workers here first", pct(m.CPU))
	default:
		v.Because = "the workers keep up"
	}
	return v
}

func broker(m Measurements, t Thresholds) Verdict {
	capacity := map[string]float64{"sqlite": t.SQLiteQueueCapacity, "postgres": t.PostgresQueueCapacity}[m.Backend]
	v := Verdict{Step: StepBroker, Question: "Move the queue to an external broker?",
		Threshold: fmt.Sprintf("jobs done ≥ %s of the backend's measured %.0f jobs/s", pct(t.BrokerShare), capacity)}
	if capacity == 0 || math.IsNaN(m.JobsPerSecond) {
		return unknown(v, "the store's backend or the jobs done are not exposed")
	}
	share := m.JobsPerSecond / capacity
	v.Numbers = []Number{{"done", fmt.Sprintf("%.1f jobs/s", m.JobsPerSecond)}, {"of the measured capacity", pct(share)}}
	v.Answer = answer(share >= t.BrokerShare)
	if v.Answer == Yes {
		v.Because = fmt.Sprintf("%.1f jobs/s is %s of what the queue on %s streamed in bench/queue: its table competes with the writes it serves", m.JobsPerSecond, pct(share), m.Backend)
	} else {
		v.Because = fmt.Sprintf("%.1f jobs/s is %s of what the queue on %s streamed in bench/queue", m.JobsPerSecond, pct(share), m.Backend)
	}
	return v
}

func limiter(m Measurements, t Thresholds) Verdict {
	v := Verdict{Step: StepLimiter, Question: "Rejections: one abusive client, or limits too tight?",
		Threshold: fmt.Sprintf("a policy rejecting ≥ %s of its checks; one key with ≥ %s of its rejections is one client", pct(t.Rejected), pct(t.OneKeyShare))}
	if len(m.Limiter) == 0 {
		return unknown(v, "no rate-limit checks in the window")
	}
	var abusive, tight []string
	v.Answer = No
	for _, p := range m.Limiter {
		share := ratio(p.Rejected, p.Checks)
		n := fmt.Sprintf("%.0f of %.0f rejected (%s)", p.Rejected, p.Checks, pct(share))
		var top KeyCount
		if len(p.TopKeys) > 0 {
			top = p.TopKeys[0]
			v.Keys = append(v.Keys, PolicyKeys{Policy: p.Name, Keys: p.TopKeys})
			n += fmt.Sprintf(", top key %s %.0f", top.Key, top.Rejected)
		}
		v.Numbers = append(v.Numbers, Number{p.Name, n})
		if math.IsNaN(share) || share < t.Rejected {
			continue
		}
		v.Answer = Yes
		if ratio(top.Rejected, p.Rejected) >= t.OneKeyShare {
			abusive = append(abusive, fmt.Sprintf("%s: %s has %s of the rejections (block or slow that client, keep the limit)", p.Name, top.Key, pct(top.Rejected/p.Rejected)))
		} else {
			tight = append(tight, fmt.Sprintf("%s: %s rejected, no key over %s of it (the limit is too tight for normal use: raise it)", p.Name, pct(share), pct(t.OneKeyShare)))
		}
	}
	switch {
	case v.Answer == No:
		v.Because = "no policy rejects enough to act on"
	default:
		v.Because = strings.Join(append(abusive, tight...), "; ")
	}
	return v
}

func unknown(v Verdict, why string) Verdict {
	v.Answer, v.Because = Unknown, why
	return v
}

func answer(yes bool) Answer {
	if yes {
		return Yes
	}
	return No
}

func rate(n float64, w time.Duration) float64 {
	if w <= 0 {
		return math.NaN()
	}
	return n / w.Seconds()
}

func ratio(part, whole float64) float64 {
	if whole <= 0 {
		return math.NaN()
	}
	return part / whole
}

func pct(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*v)
}

func secs(s float64) string {
	switch {
	case math.IsNaN(s):
		return "–"
	case s == 0:
		return "0s"
	case s < 1e-3:
		return fmt.Sprintf("%.0fµs", s*1e6)
	case s < 1:
		return fmt.Sprintf("%.1fms", s*1e3)
	}
	return fmt.Sprintf("%.1fs", s)
}

// WriteText prints the advice for a terminal: `onebox ops advise`.
func (a Advice) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Scale-out advice at %s, over the last %s:\n", a.At.Format("15:04:05"), a.Window)
	for _, v := range a.Verdicts {
		fmt.Fprintf(&b, "\n%s %s\n  %s\n  threshold: %s\n", strings.ToUpper(string(v.Answer)), v.Question, v.Because, v.Threshold)
		for _, n := range v.Numbers {
			fmt.Fprintf(&b, "  - %s: %s\n", n.Name, n.Value)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
