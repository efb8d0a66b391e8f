// Package postgres implements store.Store on PostgreSQL, with
// github.com/jackc/pgx/v5 (pgxpool).
//
// Every query runs through database/sql over the pgx pool
// (stdlib.OpenDBFromPool), so that jobs/postgres's SendTx, which takes a
// *sql.Tx, enqueues a job inside the store's own transaction: a photo
// row and its job commit together. pgx caches each statement's
// preparation per connection, so the store keeps no prepared statements
// of its own.
//
// Transactions run at READ COMMITTED. A serialization failure or a
// deadlock (SQLSTATE 40001, 40P01) is retried a few times with a short
// jittered backoff and then reported as store.ErrBusy; a lost connection
// or a server that refuses new ones is store.ErrBusy at once, which the
// app answers with 503 and Retry-After.
//
// Reads that must be fresh go to the primary; the others to a streaming
// replica in rotation, one that has replayed at least the read's token
// when it carries one (replicas.go), else to the primary.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	jobpg "onebox/jobs/postgres"
	"onebox/store"
	"onebox/store/internal/sqlutil"
)

// Options configure New. Every field but URL has a default.
type Options struct {
	// URL is the primary's connection string, postgres://…; pgxpool's
	// parameters (pool_max_conns and the like) may be set in it.
	URL string
	// OnQuery, when set, is called after every query, for metrics and a
	// slow-query log. It runs on the caller's goroutine, so it must be
	// quick and safe for concurrent use.
	OnQuery func(ctx context.Context, ev store.QueryEvent)
	// SkipMigrate leaves the schema to an explicit Migrate call.
	SkipMigrate bool
	// Logger reports applied migrations. Default: discard.
	Logger *slog.Logger
	// MaxConns caps the primary's pool unless the URL sets
	// pool_max_conns; 0 keeps pgxpool's default (4, or the CPUs if more).
	MaxConns int32
	// Replicas are streaming replicas' URLs: reads that need not be fresh
	// go to one that is in rotation and, for a token, has replayed that
	// far (replicas.go).
	Replicas []string
	// ReplicaOptions bound a replica's lag and set how often it is checked.
	ReplicaOptions ReplicaOptions
	// Attempts bounds the tries of a transaction or statement that fails
	// with a serialization failure or a deadlock. Default 3.
	Attempts int
}

// Store is a store.Store on one PostgreSQL database. It is safe for
// concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	db       *sql.DB       // over pool: every query and transaction
	jobs     *jobpg.Sender // enqueues in the store's transactions
	onQuery  func(context.Context, store.QueryEvent)
	logger   *slog.Logger
	attempts int
	replicas *replicaSet        // nil without replicas
	stop     context.CancelFunc // ends the replicas' checks
	checks   sync.WaitGroup     // the replicas' check loop

	closeOnce sync.Once
	closeErr  error

	test testHooks
}

// testHooks let this package's tests take the event lock away and slow
// a transaction down between its event insert and its commit, to show
// what the lock prevents. Zero in every Store that New returns.
type testHooks struct {
	noEventLock bool
	afterEvent  func()
}

var _ store.Store = (*Store)(nil)

// New connects to opts.URL, applies the migrations unless
// opts.SkipMigrate is set, and checks that the database answers. A
// server that cannot be reached is store.ErrBusy.
func New(ctx context.Context, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Attempts < 1 {
		opts.Attempts = 3
	}
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		// The error quotes the URL, password included: say only what is wrong.
		return nil, fmt.Errorf("postgres: parse URL: %w", errors.New(redact(err.Error())))
	}
	if opts.MaxConns > 0 && !strings.Contains(opts.URL, "pool_max_conns") {
		cfg.MaxConns = opts.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: pool: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	s := &Store{
		pool:     pool,
		db:       db,
		jobs:     jobpg.NewSender(db),
		onQuery:  opts.OnQuery,
		logger:   opts.Logger,
		attempts: opts.Attempts,
	}
	if err := s.Ping(ctx); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	if len(opts.Replicas) > 0 {
		if s.replicas, err = newReplicaSet(db, opts.Replicas, opts.ReplicaOptions); err != nil {
			return nil, errors.Join(fmt.Errorf("postgres: %w", err), s.Close())
		}
		// The first check runs before New returns, so replicas that are
		// well serve from the first read.
		s.replicas.check(ctx)
		var runCtx context.Context
		runCtx, s.stop = context.WithCancel(context.WithoutCancel(ctx))
		s.checks.Go(func() { s.replicas.run(runCtx) })
	}
	if !opts.SkipMigrate {
		if err := s.Migrate(ctx); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	return s, nil
}

// redact drops a connection string's password from a message.
func redact(msg string) string {
	if i := strings.Index(msg, "://"); i >= 0 {
		if at := strings.Index(msg[i:], "@"); at >= 0 {
			return msg[:i+3] + "…" + msg[i+at:]
		}
	}
	return msg
}

// Replicas says what the last check found of each replica, in the order
// of Options.Replicas: for metrics, readiness and the dashboard.
func (s *Store) Replicas() []ReplicaStatus {
	if s.replicas == nil {
		return nil
	}
	return s.replicas.status()
}

// Ping runs SELECT 1 on the primary.
func (s *Store) Ping(ctx context.Context) error {
	const query = `select 1`
	return s.observe(ctx, "ping", query, func() error {
		var one int
		return s.db.QueryRowContext(ctx, query).Scan(&one)
	})
}

// Close closes the database/sql handle and the pool. Calls after Close
// fail; closing twice is fine.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.replicas != nil {
			s.stop()
			s.checks.Wait()
			s.replicas.close()
		}
		s.closeErr = s.db.Close()
		s.pool.Close()
	})
	return s.closeErr
}

// route says where a read may go: a fresh one to the primary; any other
// to a replica in rotation that has replayed at least at (the primary if
// none has).
type route struct {
	fresh bool
	at    store.Token
}

// onPrimary is the route of reads that are part of a write's protocol
// (migrations, tokens) or that must see everything.
var onPrimary = route{fresh: true}

// reader is the route of a read with freshness f and token at. Every
// read method takes its route here.
func (s *Store) reader(f store.Freshness, at store.Token) route {
	return route{fresh: f == store.MustBeFresh, at: at}
}

// query runs fn on the database r picks: the primary, or a replica,
// falling back to the primary if the replica fails (replicaSet.read).
func (s *Store) query(ctx context.Context, r route, fn func(*sql.DB) error) error {
	if r.fresh || s.replicas == nil {
		return fn(s.db)
	}
	_, err := s.replicas.read(ctx, string(r.at), fn)
	return err
}

// observe is the one path every query takes: fn runs the query named
// name, observe translates its error at the boundary and reports it to
// the OnQuery hook. Without a hook it does not read the clock.
func (s *Store) observe(ctx context.Context, name, query string, fn func() error) error {
	if s.onQuery == nil {
		return translate(name, fn())
	}
	start := time.Now()
	err := translate(name, fn())
	end := time.Now()
	s.onQuery(ctx, store.QueryEvent{Name: name, SQL: query, Duration: end.Sub(start), End: end, Err: err})
	return err
}

// retry runs fn, which runs a statement or a whole transaction, again
// while it fails with a serialization failure or a deadlock, at most
// s.attempts times in all, after a short random pause that doubles each
// time. The last failure is store.ErrBusy.
func (s *Store) retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := range s.attempts {
		if attempt > 0 {
			pause := rand.N(5 * time.Millisecond << attempt)
			select {
			case <-ctx.Done():
				return err
			case <-time.After(pause):
			}
		}
		if err = fn(); !errors.Is(err, errRetryable) {
			return err
		}
	}
	return err
}

// do runs one statement outside a transaction, named name, retried as
// retry retries.
func (s *Store) do(ctx context.Context, name, query string, fn func() error) error {
	return s.retry(ctx, func() error { return s.observe(ctx, name, query, fn) })
}

// inTx runs fn in a READ COMMITTED transaction on the primary and
// commits it. The whole transaction runs again (fn included) on a
// serialization failure or a deadlock, so fn must not keep state across
// calls that it does not reset.
func (s *Store) inTx(ctx context.Context, name string, fn func(tx *sql.Tx) error) error {
	return s.retry(ctx, func() error {
		var tx *sql.Tx
		err := s.observe(ctx, name+"_begin", "BEGIN", func() error {
			var err error
			tx, err = s.db.BeginTx(ctx, nil)
			return err
		})
		if err != nil {
			return err
		}
		// A no-op after Commit; otherwise fn's error is the one to report.
		defer func() { _ = tx.Rollback() }()
		if err := fn(tx); err != nil {
			return err
		}
		return s.observe(ctx, name+"_commit", "COMMIT", tx.Commit)
	})
}

// txExec runs the statement named name in tx.
func (s *Store) txExec(ctx context.Context, tx *sql.Tx, name, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := s.observe(ctx, name, query, func() error {
		var err error
		res, err = tx.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

// txExecOne is txExec for an UPDATE or DELETE that must match a row:
// none is store.ErrNotFound.
func (s *Store) txExecOne(ctx context.Context, tx *sql.Tx, name, query string, args ...any) error {
	return s.observe(ctx, name, query, func() error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		return affectedOne(res)
	})
}

// lockUserEvents takes, in tx, the transaction-level advisory lock of
// userID's events. Every transaction that inserts an event of a user
// takes it first, before any row lock (so no two such transactions wait
// on each other in opposite orders), and holds it until it ends: one
// user's event inserts are serialized, an event takes its ID from the
// sequence inside the lock, and so a smaller ID of the user has always
// committed, or rolled back, before a larger one can (store.Photos.Events).
func (s *Store) lockUserEvents(ctx context.Context, tx *sql.Tx, userID string) error {
	if s.test.noEventLock {
		return nil
	}
	const query = `select pg_advisory_xact_lock(hashtextextended($1, 0))`
	_, err := s.txExec(ctx, tx, "events_lock_user", query, "onebox.events:"+userID)
	return err
}

// errRetryable marks a serialization failure or a deadlock: retry runs
// the work again; past its attempts the error is store.ErrBusy.
var errRetryable = errors.New("serialization failure or deadlock")

// translate maps driver errors to the store's sentinels and names the
// query. The driver's message is kept as text, not as a wrapped error,
// so callers cannot come to depend on driver types. The context's own
// errors stay as they are.
func translate(name string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("postgres %s: %w", name, err)
	case errors.Is(err, sql.ErrNoRows), errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("postgres %s: %w", name, store.ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch code := pgErr.Code; {
		case code == "40001", code == "40P01": // serialization_failure, deadlock_detected
			return fmt.Errorf("postgres %s: %w: %w (%v)", name, store.ErrBusy, errRetryable, err)
		case code == "23505": // unique_violation
			return fmt.Errorf("postgres %s: %w (%v)", name, store.ErrConflict, err)
		case code == "23503": // foreign_key_violation
			// Every foreign key names a parent row (the user of a session
			// or photo, the photo of an idempotency key): it is gone.
			return fmt.Errorf("postgres %s: %w (%v)", name, store.ErrNotFound, err)
		case code == "23514": // check_violation
			// A value outside its column's domain, such as a photo status.
			return fmt.Errorf("postgres %s: %w (%v)", name, store.ErrInvalid, err)
		case code == "53100": // disk_full
			return fmt.Errorf("postgres %s: %w (%v)", name, store.ErrFull, err)
		case strings.HasPrefix(code, "08"), // connection_exception
			code == "53300",                  // too_many_connections
			code == "57P01", code == "57P02", // admin_shutdown, crash_shutdown
			code == "57P03": // cannot_connect_now (starting up, recovering)
			return fmt.Errorf("postgres %s: %w (%v)", name, store.ErrBusy, err)
		}
		return fmt.Errorf("postgres %s: %w", name, err)
	}
	if unreachable(err) {
		return fmt.Errorf("postgres %s: %w (%v)", name, store.ErrBusy, err)
	}
	return fmt.Errorf("postgres %s: %w", name, err)
}

// unreachable reports whether err says the server could not be reached
// or the connection was lost: a failure of the moment, not of the query.
func unreachable(err error) bool {
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) || errors.As(err, &netErr) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// affectedOne turns an UPDATE or DELETE that matched no row into
// sql.ErrNoRows, which translate reports as store.ErrNotFound.
func affectedOne(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return sql.ErrNoRows
	}
	return nil
}

// readOne runs the query named name on db, a read of one row, and scans
// its row. No row is store.ErrNotFound.
func readOne[T any](ctx context.Context, s *Store, r route, name, query string, scan func(scanner, *T) error, args ...any) (T, error) {
	var v T
	err := s.do(ctx, name, query, func() error {
		return s.query(ctx, r, func(db *sql.DB) error { return scan(db.QueryRowContext(ctx, query, args...), &v) })
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// queryAll runs the query named name on db and scans every row, as
// collect does.
func queryAll[T any](ctx context.Context, s *Store, r route, name, query string, scan func(scanner, *T) error, args ...any) ([]T, error) {
	var vs []T
	err := s.do(ctx, name, query, func() error {
		return s.query(ctx, r, func(db *sql.DB) error {
			rows, err := db.QueryContext(ctx, query, args...)
			if err != nil {
				return err
			}
			vs, err = sqlutil.Collect(rows, scan)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return vs, nil
}

// scanner is a *sql.Row or *sql.Rows; the alias keeps the scan
// functions' signatures short.
type scanner = sqlutil.Scanner

// utc is a time for a timestamptz parameter. PostgreSQL keeps
// microseconds: pgx drops the rest, as Truncate does.
func utc(t time.Time) time.Time {
	// Truncated here: PostgreSQL would round to the nearest microsecond,
	// and the store returns what it stored.
	return t.UTC().Truncate(time.Microsecond)
}

// utcTime scans a timestamptz into a UTC time.Time; pgx hands it over in
// the process's local zone.
type utcTime struct{ t *time.Time }

func (ut utcTime) Scan(src any) error {
	t, ok := src.(time.Time)
	if !ok {
		return fmt.Errorf("time column: got %T, want timestamptz", src)
	}
	*ut.t = t.UTC()
	return nil
}
