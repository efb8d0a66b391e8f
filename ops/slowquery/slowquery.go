// Package slowquery is the slow-query log: every query slower than a
// threshold, as the store's OnQuery hook reports it, is kept in memory
// (the last ones, for the dashboard) and logged with its plan, at most
// once per query name per interval so a storm of slow queries does not
// flood the log. Arguments are never logged: the store's QueryEvent does
// not carry them.
package slowquery

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"onebox/correlation"
	"onebox/store"
)

// SlowQuery is one query that took at least the threshold.
type SlowQuery struct {
	Time      time.Time     `json:"time"` // when it ended
	Name      string        `json:"name"`
	SQL       string        `json:"sql"`
	Duration  time.Duration `json:"duration"`
	RequestID string        `json:"request_id,omitempty"`
	Err       string        `json:"error,omitempty"`
	// Plan is the query plan, explained at most once per name and
	// interval ("" until then, or for a statement without one).
	Plan string `json:"plan,omitempty"`
}

// Options configure New. Zero fields take the defaults.
type Options struct {
	// Threshold: queries that take at least this long are slow. 0 turns
	// the log off.
	Threshold time.Duration
	// Explain returns the plan of a statement (sqlite.Store.Explain). Nil
	// logs no plans; SetExplain can set it later.
	Explain func(ctx context.Context, sql string) (string, error)
	// Logger gets one warning per query name and Every. Default: discard.
	Logger *slog.Logger
	// Keep is how many recent slow queries Recent returns. Default 50.
	Keep int
	// Every is the least time between two log lines (and plans) of one
	// query name. Default 1m.
	Every time.Duration
	// ExplainTimeout bounds one Explain. Default 2s.
	ExplainTimeout time.Duration
	Now            func() time.Time
}

// Log is the slow-query log. A nil *Log ignores everything.
type Log struct {
	o  Options
	wg sync.WaitGroup

	mu     sync.Mutex
	recent []SlowQuery // a ring of o.Keep
	next   int
	names  map[string]*byName
}

// byName is the rate limit and the last plan of one query name.
type byName struct {
	logged     time.Time // when a line was last logged
	suppressed int       // slow runs since, not logged
	plan       string
}

// New returns a Log, or nil when o.Threshold is 0.
func New(o Options) *Log {
	if o.Threshold <= 0 {
		return nil
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Keep <= 0 {
		o.Keep = 50
	}
	if o.Every <= 0 {
		o.Every = time.Minute
	}
	if o.ExplainTimeout <= 0 {
		o.ExplainTimeout = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Log{o: o, names: map[string]*byName{}}
}

// SetExplain sets Options.Explain: the store is opened after the log,
// which sees the queries of its migrations.
func (l *Log) SetExplain(explain func(ctx context.Context, sql string) (string, error)) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.o.Explain = explain
	l.mu.Unlock()
}

// Observe is the store's OnQuery hook. A fast query costs a comparison.
// The plan is read and the line logged on a goroutine of their own, so
// the query's caller, which may hold the writer, does not wait for them.
func (l *Log) Observe(ctx context.Context, ev store.QueryEvent) {
	if l == nil || ev.Duration < l.o.Threshold {
		return
	}
	q := SlowQuery{Time: l.o.Now(), Name: ev.Name, SQL: ev.SQL, Duration: ev.Duration, RequestID: correlation.RequestID(ctx)}
	if ev.Err != nil {
		q.Err = ev.Err.Error()
	}
	l.mu.Lock()
	if len(l.recent) < l.o.Keep {
		l.recent = append(l.recent, q)
	} else {
		l.recent[l.next] = q
	}
	l.next = (l.next + 1) % l.o.Keep
	n := l.names[ev.Name]
	if n == nil {
		n = &byName{}
		l.names[ev.Name] = n
	}
	if !n.logged.IsZero() && q.Time.Sub(n.logged) < l.o.Every {
		n.suppressed++
		l.mu.Unlock()
		return
	}
	n.logged = q.Time
	suppressed := n.suppressed
	n.suppressed = 0
	l.mu.Unlock()

	l.wg.Go(func() { l.log(context.WithoutCancel(ctx), q, suppressed) })
}

func (l *Log) log(ctx context.Context, q SlowQuery, suppressed int) {
	attrs := []slog.Attr{
		slog.String("query", q.Name),
		slog.Int64("duration_us", q.Duration.Microseconds()),
		slog.String("sql", q.SQL),
		slog.String("request_id", q.RequestID),
	}
	if q.Err != "" {
		attrs = append(attrs, slog.String("error", q.Err))
	}
	l.mu.Lock()
	explain := l.o.Explain
	l.mu.Unlock()
	if explain != nil && explainable(q.SQL) {
		ectx, cancel := context.WithTimeout(ctx, l.o.ExplainTimeout)
		plan, err := explain(ectx, q.SQL)
		cancel()
		if err != nil {
			attrs = append(attrs, slog.String("plan_error", err.Error()))
		} else {
			attrs = append(attrs, slog.String("plan", plan))
			l.mu.Lock()
			l.names[q.Name].plan = plan
			l.mu.Unlock()
		}
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	l.o.Logger.LogAttrs(ctx, slog.LevelWarn, "slow query", attrs...)
}

// explainable: statements that have a plan. BEGIN and COMMIT, often the
// slow ones when writers queue, have none; the store also names some
// operations that are not one statement.
func explainable(sql string) bool {
	word, _, _ := strings.Cut(strings.TrimSpace(sql), " ")
	switch strings.ToUpper(word) {
	case "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "REPLACE":
		return true
	}
	return false
}

// Recent returns the last slow queries, newest first, with the latest
// plan of their name.
func (l *Log) Recent() []SlowQuery {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]SlowQuery, 0, len(l.recent))
	for i := range len(l.recent) {
		q := l.recent[(l.next-1-i+2*len(l.recent))%len(l.recent)]
		q.Plan = l.names[q.Name].plan
		out = append(out, q)
	}
	return out
}

// Wait waits for the log lines being written (their plans being read).
func (l *Log) Wait() {
	if l != nil {
		l.wg.Wait()
	}
}
