package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// ReplicaOptions bound how far behind a replica may be and still serve
// reads, and how often that is checked. Zero values take the defaults.
type ReplicaOptions struct {
	// MaxLagBytes is the WAL a replica may have left to replay
	// (pg_wal_lsn_diff on the primary); default 16 MiB.
	MaxLagBytes int64
	// MaxLag is the largest pg_stat_replication.replay_lag; default 10s.
	MaxLag time.Duration
	// CheckInterval is the time between two checks; default 1s.
	CheckInterval time.Duration
	// MaxConns caps each replica's pool unless its URL sets
	// pool_max_conns; default 4.
	MaxConns int32
}

func (o ReplicaOptions) withDefaults() ReplicaOptions {
	if o.MaxLagBytes <= 0 {
		o.MaxLagBytes = 16 << 20
	}
	if o.MaxLag <= 0 {
		o.MaxLag = 10 * time.Second
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 4
	}
	return o
}

// ReplicaStatus is what the last check found of one replica, for metrics,
// readiness and the dashboard.
type ReplicaStatus struct {
	Name       string // host:port
	Healthy    bool   // it answered and is a standby
	InRotation bool   // healthy and within the lag bounds: it serves reads
	ReplayLSN  string // pg_last_wal_replay_lsn() on the replica
	LagBytes   int64  // WAL not yet replayed, by the primary's reckoning
	LagSeconds float64
	LastError  string // why it is out of rotation, if it is
	CheckedAt  time.Time
}

// primaryName is what pick names the primary.
const primaryName = "primary"

type replica struct {
	name  string
	pool  *pgxpool.Pool
	db    *sql.DB
	state atomic.Pointer[replicaState]
}

type replicaState struct {
	status ReplicaStatus
	replay uint64 // ReplayLSN, parsed
}

// replicaSet routes reads between the primary and its streaming replicas.
// A background check (run) reads each replica's replay position and the
// primary's view of its lag; pick uses the last check's result, so it
// never waits on the network.
type replicaSet struct {
	primary  *sql.DB
	replicas []*replica
	opts     ReplicaOptions
	next     atomic.Uint64
	// primaryErr is the primary's own failure to report, if any.
	primaryErr atomic.Pointer[string]
}

// newReplicaSet opens a small pool on each replica URL. Replicas start out
// of rotation until the first check finds them healthy. The primary
// handle stays the caller's; close closes only the replicas' pools.
func newReplicaSet(primary *sql.DB, replicaURLs []string, opts ReplicaOptions) (*replicaSet, error) {
	opts = opts.withDefaults()
	s := &replicaSet{primary: primary, opts: opts}
	for _, rawURL := range replicaURLs {
		cfg, err := pgxpool.ParseConfig(rawURL)
		if err != nil {
			s.close()
			// Not %w: pgx's parse error carries the URL, password and all.
			return nil, fmt.Errorf("replica URL %q: invalid", redactURL(rawURL))
		}
		if !strings.Contains(rawURL, "pool_max_conns") {
			cfg.MaxConns = opts.MaxConns
		}
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("replica %s: %w", redactURL(rawURL), err)
		}
		r := &replica{
			name: net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))),
			pool: pool,
			db:   stdlib.OpenDBFromPool(pool),
		}
		r.state.Store(&replicaState{status: ReplicaStatus{Name: r.name, LastError: "not checked yet"}})
		s.replicas = append(s.replicas, r)
	}
	return s, nil
}

// redactURL is rawURL without its password.
func redactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

func (s *replicaSet) close() {
	for _, r := range s.replicas {
		r.db.Close()
		r.pool.Close()
	}
}

// run checks the replicas every CheckInterval until ctx is done.
func (s *replicaSet) run(ctx context.Context) {
	t := time.NewTicker(s.opts.CheckInterval)
	defer t.Stop()
	for {
		s.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// A standbyLag is one row of the primary's pg_stat_replication.
type standbyLag struct {
	bytes   int64
	seconds float64
}

// check reads the primary's WAL position and pg_stat_replication, then
// each replica's replay position, and updates every replica's state.
func (s *replicaSet) check(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(s.opts.CheckInterval, 2*time.Second))
	defer cancel()
	current, lags, err := s.primaryView(ctx)
	if err != nil {
		msg := err.Error()
		s.primaryErr.Store(&msg)
	} else {
		s.primaryErr.Store(nil)
	}
	var wg sync.WaitGroup
	for _, r := range s.replicas {
		wg.Go(func() { r.state.Store(s.checkReplica(ctx, r, current, lags)) })
	}
	wg.Wait()
}

// primaryView returns pg_current_wal_lsn() and, by application_name, the
// lag of each standby as the primary sees it. replay_lag is NULL once a
// standby has caught up and no WAL has come since: no lag.
func (s *replicaSet) primaryView(ctx context.Context) (uint64, map[string][]standbyLag, error) {
	var current string
	if err := s.primary.QueryRowContext(ctx, "select pg_current_wal_lsn()::text").Scan(&current); err != nil {
		return 0, nil, fmt.Errorf("primary: %w", err)
	}
	lsn, err := parseLSN(current)
	if err != nil {
		return 0, nil, fmt.Errorf("primary: %w", err)
	}
	rows, err := s.primary.QueryContext(ctx, `
		select application_name,
		       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint,
		       coalesce(extract(epoch from replay_lag), 0)::float8
		from pg_stat_replication`)
	if err != nil {
		return 0, nil, fmt.Errorf("primary: pg_stat_replication: %w", err)
	}
	defer rows.Close()
	lags := map[string][]standbyLag{}
	for rows.Next() {
		var name string
		var l standbyLag
		if err := rows.Scan(&name, &l.bytes, &l.seconds); err != nil {
			return 0, nil, fmt.Errorf("primary: pg_stat_replication: %w", err)
		}
		lags[name] = append(lags[name], l)
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("primary: pg_stat_replication: %w", err)
	}
	return lsn, lags, nil
}

// replicaQuery reads the replay position and the name the replica's WAL
// receiver gives the primary: application_name from primary_conninfo,
// else cluster_name, else "walreceiver" (PostgreSQL's own fallbacks).
const replicaQuery = `
	select pg_is_in_recovery(),
	       coalesce(pg_last_wal_replay_lsn()::text, ''),
	       coalesce(substring((select conninfo from pg_stat_wal_receiver) from 'application_name=''?([^'' ]+)'),
	                nullif(current_setting('cluster_name'), ''), 'walreceiver')`

// checkReplica returns the replica's new state. current is the primary's
// WAL position (0 if the primary did not answer) and lags its
// pg_stat_replication rows by application_name.
func (s *replicaSet) checkReplica(ctx context.Context, r *replica, current uint64, lags map[string][]standbyLag) *replicaState {
	st := ReplicaStatus{Name: r.name, CheckedAt: time.Now()}
	fail := func(err error) *replicaState {
		st.LastError = err.Error()
		return &replicaState{status: st}
	}
	var standby bool
	var replay, appName string
	if err := r.pool.QueryRow(ctx, replicaQuery).Scan(&standby, &replay, &appName); err != nil {
		return fail(err)
	}
	if !standby {
		// A promoted or wrongly configured server: its data may have left
		// the primary's timeline, so it must not serve the primary's reads.
		return fail(errors.New("not a standby: pg_is_in_recovery() is false"))
	}
	lsn, err := parseLSN(replay)
	if err != nil {
		return fail(fmt.Errorf("pg_last_wal_replay_lsn: %w", err))
	}
	st.Healthy = true
	st.ReplayLSN = replay
	// The primary's row for this replica, if its name tells it apart;
	// else the distance from the primary's position read just before.
	if l := lags[appName]; len(l) == 1 {
		st.LagBytes, st.LagSeconds = l[0].bytes, l[0].seconds
	} else if current > lsn {
		st.LagBytes = int64(current - lsn)
	}
	switch {
	case current == 0 && s.primaryErr.Load() != nil:
		// The lag is unknown, but a standby that answers still serves
		// reads that carry no token while the primary is away.
		st.LastError = "lag unknown: " + *s.primaryErr.Load()
		st.InRotation = true
	case st.LagBytes > s.opts.MaxLagBytes:
		st.LastError = fmt.Sprintf("lag %d bytes over the bound of %d", st.LagBytes, s.opts.MaxLagBytes)
	case st.LagSeconds > s.opts.MaxLag.Seconds():
		st.LastError = fmt.Sprintf("replay lag %.1fs over the bound of %s", st.LagSeconds, s.opts.MaxLag)
	default:
		st.InRotation = true
	}
	return &replicaState{status: st, replay: lsn}
}

// pick returns the handle a read goes to and its name (a replica's
// host:port, or "primary"). Without a token, any replica in rotation, in
// turn. With one (a WAL position the reader must see, as "X/Y"), only a
// replica in rotation whose last checked replay position has reached it:
// a standby's replay position only grows, so the checked one is a lower
// bound of the present one and the read sees the token's writes.
// Otherwise, and with no replica in rotation, the primary.
func (s *replicaSet) pick(token string) (*sql.DB, string) {
	var need uint64
	if token != "" {
		lsn, err := parseLSN(token)
		if err != nil {
			return s.primary, primaryName
		}
		need = lsn
	}
	n := uint64(len(s.replicas))
	start := s.next.Add(1)
	for i := range n {
		r := s.replicas[(start+i)%n]
		st := r.state.Load()
		if st.status.InRotation && st.replay >= need {
			return r.db, r.name
		}
	}
	return s.primary, primaryName
}

// read runs fn on the handle pick chooses for token and returns the name
// of the server that answered. A replica that fails (it stopped, or
// cancelled the query for a conflict with recovery) costs the read
// nothing: fn runs again on the primary, and a replica whose connection
// failed leaves the rotation at once rather than at the next check.
// sql.ErrNoRows is an answer, not a failure.
func (s *replicaSet) read(ctx context.Context, token string, fn func(*sql.DB) error) (string, error) {
	db, name := s.pick(token)
	err := fn(db)
	if err == nil || name == primaryName || errors.Is(err, sql.ErrNoRows) || ctx.Err() != nil {
		return name, err
	}
	if connectionLost(err) {
		s.evict(name, err)
	}
	return primaryName, fn(s.primary)
}

// connectionLost tells a server that went away (no connection, or
// PostgreSQL's classes 08 connection exception and 57 operator
// intervention, such as a shutdown) from an error of the query itself.
func connectionLost(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57")
	}
	return true
}

// evict takes the replica named name out of rotation until the next check
// finds it well.
func (s *replicaSet) evict(name string, err error) {
	for _, r := range s.replicas {
		if r.name != name {
			continue
		}
		st := *r.state.Load()
		st.status.InRotation = false
		st.status.LastError = err.Error()
		r.state.Store(&st)
	}
}

// status returns what the last check found of every replica, in the
// order of their URLs.
func (s *replicaSet) status() []ReplicaStatus {
	out := make([]ReplicaStatus, len(s.replicas))
	for i, r := range s.replicas {
		out[i] = r.state.Load().status
	}
	return out
}

// parseLSN parses a pg_lsn's text form, two hex halves "X/Y", into the
// 64-bit WAL position it stands for.
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("WAL position %q: want X/Y", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("WAL position %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("WAL position %q: %w", s, err)
	}
	return h<<32 | l, nil
}

// ReplicaProblems says which replicas are out of rotation and why, for
// readiness (an advisory check: their reads go to the primary), or nil
// when every one serves.
func ReplicaProblems(replicas []ReplicaStatus) error {
	var errs []error
	for _, r := range replicas {
		if r.InRotation {
			continue
		}
		why := r.LastError
		if why == "" {
			why = "not checked yet"
		}
		errs = append(errs, fmt.Errorf("replica %s out of rotation (%s); its reads go to the primary", r.Name, why))
	}
	return errors.Join(errs...)
}
