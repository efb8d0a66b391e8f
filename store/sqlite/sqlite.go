// Package sqlite implements store.Store on SQLite, with the pure-Go driver
// modernc.org/sqlite.
//
// A Store holds three sets of connections to one database file: a single
// writer connection, so writers queue in Go instead of spinning on
// SQLITE_BUSY; a query-only database/sql pool for reads of many rows; and
// a query-only key reader (keyread.go) that serves reads of one row by
// key on driver connections directly. The database is in WAL mode, where
// readers do not block the writer and every statement sees all
// transactions committed before it started. SQLite keeps a single copy of
// the data, so reads that must be fresh (store.MustBeFresh, Credentials,
// Session) are served by the readers too. A store.MayBeStale read by key
// may come from a snapshot shared with other reads, up to 100 ms old for
// another process's writes, as a replica's read may lag (keyread.go).
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"onebox/internal/stmtcache"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/store"
	"onebox/store/internal/sqlutil"
)

// Options configure New. Every field but Path has a default.
type Options struct {
	// Path is the database file, created if missing. It must be a file
	// name (not ":memory:"): both pools open it.
	Path string
	// BusyTimeout is how long a statement waits for a lock held by
	// another process before failing with store.ErrBusy. Default 5s.
	BusyTimeout time.Duration
	// ReadConns sizes the reader pool, and the key reader too. Default
	// 16 × runtime.NumCPU().
	// WAL readers do not block each other, so the size bounds memory (each
	// connection has its page cache and prepared statements), not
	// parallelism. A pool sized to the CPUs made reads queue in
	// database/sql, which hands a freed connection to the longest waiter
	// once the scheduler runs it: CPU sat idle, and 2 -> 32 connections
	// took uncached profile reads from 15.4k to 17.8k req/s.
	ReadConns int
	// MaxReadSnapshot bounds a read of the reader pool (the lists): past
	// it the read fails with context.DeadlineExceeded. A read's snapshot
	// keeps the WAL from being copied past it, so this bound, with the
	// key reader's 100 ms (keyread.go), is what bounds the WAL while
	// writes flow. Admin reads (backup's counts, copy, integrity check)
	// are not bounded. Default 5s.
	MaxReadSnapshot time.Duration
	// OnQuery, when set, is called after every query, for metrics and a
	// slow-query log. It runs on the caller's goroutine, so it must be
	// quick and safe for concurrent use.
	OnQuery func(ctx context.Context, ev store.QueryEvent)
	// SkipMigrate leaves the schema to an explicit Migrate call.
	SkipMigrate bool
	// NoCreate opens only an existing database: a missing file is an
	// error wrapping fs.ErrNotExist, not a new empty database. With
	// SkipMigrate, a command can read a database without changing it
	// into one it did not find.
	NoCreate bool
	// Logger reports applied migrations. Default: discard.
	Logger *slog.Logger
	// OnWriterHold, when set, gets every hold of the writer once it
	// ended: the query, the route or job kind on whose behalf, how long
	// it waited and held. It runs on the writer's goroutine after the
	// writer is free again, so it must be quick and safe for concurrent
	// use.
	OnWriterHold func(WriterHold)
	// Checkpoint configures the checkpointer that keeps the WAL bounded
	// (checkpoint.go).
	Checkpoint CheckpointOptions
}

// Store is a store.Store on one SQLite database file. It is safe for
// concurrent use.
type Store struct {
	writer  *pool
	reader  *pool
	keys    *keyReader
	jobs    *jobsqlite.Sender // enqueues in the store's transactions
	onQuery func(context.Context, store.QueryEvent)
	logger  *slog.Logger
	// snapshotDSN opens the connection of a Snapshot (backup.go).
	snapshotDSN string
	path        string
	busy        atomic.Int64 // SQLITE_BUSY answers
	ckpt        *checkpointer
}

var _ store.Store = (*Store)(nil)

// New opens the database at opts.Path, applies the migrations unless
// opts.SkipMigrate is set, and checks that both pools answer.
func New(ctx context.Context, opts Options) (*Store, error) {
	// The driver splits its DSN at the first '?', so such a path cannot
	// be passed on; ":memory:" would give every connection its own database.
	if opts.Path == "" || opts.Path == ":memory:" || strings.Contains(opts.Path, "?") {
		return nil, fmt.Errorf("sqlite: path %q: need a file name without '?'", opts.Path)
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = 16 * runtime.NumCPU()
	}
	if opts.MaxReadSnapshot <= 0 {
		opts.MaxReadSnapshot = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}

	if opts.NoCreate {
		// The driver would create the file: SQLite's mode=rw (in a file:
		// URI, see dsn) refuses to, but says only "unable to open", so
		// the usual case gets its own error first.
		// An empty file is no database either: opening it in WAL mode
		// would write one.
		fi, err := os.Stat(opts.Path)
		if err == nil && fi.Size() == 0 {
			err = &fs.PathError{Op: "open", Path: opts.Path, Err: fs.ErrNotExist}
		}
		if err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
	}

	// BEGIN IMMEDIATE takes the write lock up front, waiting under
	// busy_timeout, so no statement fails with SQLITE_BUSY half-way
	// through a transaction.
	writerParams := "_txlock=immediate"
	if !opts.Checkpoint.Off {
		// The checkpointer does it, off the request path (checkpoint.go).
		writerParams += "&_pragma=wal_autocheckpoint(0)"
	}
	// The writer keeps the statements run by their text, goqite's Send
	// among them, compiled (internal/stmtcache).
	writer := sql.OpenDB(uninterrupted{stmtcache.New(&sqlite.Driver{}, dsn(opts, writerParams), writerStatements)})
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)

	readerDSN := dsn(opts, readerParams)
	reader, err := sql.Open("sqlite", readerDSN)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("sqlite: open reader: %w", err), writer.Close())
	}
	reader.SetMaxOpenConns(opts.ReadConns)
	// The default of two idle connections would close and reopen the
	// others, with their prepared statements, under load.
	reader.SetMaxIdleConns(opts.ReadConns)

	lock := newWriteLock(maxWriteWaiters)
	lock.onHold = opts.OnWriterHold
	s := &Store{
		path:    opts.Path,
		writer:  &pool{db: writer, lock: lock},
		reader:  &pool{db: reader, gate: &sync.RWMutex{}, maxRead: opts.MaxReadSnapshot},
		keys:    newKeyReader(opts.ReadConns, &lock.marks, func() (driver.Conn, error) { return (&sqlite.Driver{}).Open(readerDSN) }),
		jobs:    jobsqlite.NewSender(writer),
		onQuery: opts.OnQuery,
		logger:  opts.Logger,
		// Not query-only, which refuses VACUUM INTO.
		snapshotDSN: dsn(opts, "_pragma=query_only(0)"),
	}
	if err := openWriter(ctx, writer, opts.BusyTimeout); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	if !opts.Checkpoint.Off {
		// No busy timeout: a checkpoint never waits on a lock.
		co := opts
		co.BusyTimeout = 0
		db, err := sql.Open("sqlite", dsn(co, ""))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("sqlite: open checkpointer: %w", err), s.Close())
		}
		if opts.Checkpoint.Logger == nil {
			opts.Checkpoint.Logger = opts.Logger
		}
		s.ckpt = newCheckpointer(opts.Checkpoint, db, lock, s.reader.gate, opts.Path, opts.Checkpoint.Logger)
		go s.ckpt.run()
	}
	if !opts.SkipMigrate {
		if err := s.Migrate(ctx); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	// Ping opens the writer before any reader, so the file exists and is
	// in WAL mode by the time a query-only connection opens it.
	if err := s.Ping(ctx); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// openWriter opens the writer's one connection, which then stays in its
// pool. On a file that another process is still creating, the DSN's
// journal_mode(WAL) fails at once with SQLITE_BUSY rather than waiting
// under busy_timeout, so this retries until timeout.
func openWriter(ctx context.Context, db *sql.DB, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := db.PingContext(ctx)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return translate("open_writer", err)
		}
		select {
		case <-ctx.Done():
			return translate("open_writer", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// writerStatements bounds the writer's statement cache: onebox's own
// and goqite's statements are a few dozen.
const writerStatements = 256

// readerParams make a connection read-only, with reads through mmap.
const readerParams = "_pragma=query_only(1)&_pragma=mmap_size(268435456)"

// dsn sets every pragma in the DSN, so each new connection of a pool
// gets them; a db.Exec would reach only one connection.
func dsn(opts Options, extra string) string {
	params := []string{
		"_pragma=busy_timeout(" + strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10) + ")",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(NORMAL)",
		"_pragma=foreign_keys(1)",
		extra,
	}
	if opts.NoCreate {
		// A file: URI passes SQLite's own mode parameter on (a plain
		// name's would be dropped); the path is escaped as a URI's.
		return "file:" + (&url.URL{Path: opts.Path}).EscapedPath() + "?mode=rw&" + strings.Join(params, "&")
	}
	return opts.Path + "?" + strings.Join(params, "&")
}

// Ping runs SELECT 1 on the writer, the reader pool and the key reader.
func (s *Store) Ping(ctx context.Context) error {
	if err := ping(ctx, s, s.writer, "ping_writer"); err != nil {
		return err
	}
	if err := ping(ctx, s, s.reader, "ping_reader"); err != nil {
		return err
	}
	var one int64
	return s.readKey(ctx, store.MustBeFresh, "ping_keys", `SELECT 1`, func(r scanner) error { return r.Scan(&one) })
}

// ping does not take the writer's lock, whose wait cannot be cancelled:
// a readiness probe must fail within its deadline when the writer is
// stuck, and database/sql's wait for the connection honours ctx.
func ping(ctx context.Context, s *Store, p *pool, name string) error {
	return s.observe(ctx, name, `SELECT 1`, func() error {
		var one int
		return p.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
	})
}

// Close closes the key reader and both pools. Calls after Close fail;
// closing twice is fine.
func (s *Store) Close() error {
	// The writer goes last: the last connection to close checkpoints the WAL.
	var ckpt error
	if s.ckpt != nil {
		ckpt, s.ckpt = s.ckpt.close(), nil
	}
	return errors.Join(ckpt, s.keys.close(), s.reader.close(), s.writer.close())
}

// pool is a *sql.DB and the statements prepared on it, keyed by SQL text.
// database/sql prepares a statement again on each connection it lands on.
type pool struct {
	db    *sql.DB
	lock  *writeLock // the writer's; nil for the reader pool
	stmts sync.Map   // string → *sql.Stmt
	// gate, on the reader pool, lets the checkpointer wait out the reads
	// in flight (and hold new ones back) while it copies the whole WAL;
	// maxRead bounds each read's snapshot.
	gate    *sync.RWMutex
	maxRead time.Duration
}

func (p *pool) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := p.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	// Preparing lazily, not in New, lets a Store open before Migrate.
	st, err := p.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := p.stmts.LoadOrStore(query, st); loaded {
		// Another goroutine prepared it first: keep one.
		_ = st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

func (p *pool) close() error {
	var errs []error
	p.stmts.Range(func(_, st any) bool {
		errs = append(errs, st.(*sql.Stmt).Close())
		return true
	})
	return errors.Join(append(errs, p.db.Close())...)
}

// observe is the one path every query takes: fn runs the query named
// name, observe translates its error at the boundary and reports it to
// the OnQuery hook. Without a hook it does not read the clock.
func (s *Store) observe(ctx context.Context, name, query string, fn func() error) error {
	r := s.timed(ctx, name, query, fn)
	s.report(r)
	return r.ev.Err
}

// report is a query's OnQuery call, made or kept for later.
type report struct {
	ctx context.Context
	ev  store.QueryEvent
}

// timed runs fn as observe does and returns its report, for the caller
// to hand to the hook once it holds the writer no longer. The hook
// takes microseconds (a span, when the request is traced), and every
// write queued for the writer would wait them out. Without a hook it
// does not read the clock.
func (s *Store) timed(ctx context.Context, name, query string, fn func() error) report {
	if s.onQuery == nil {
		return report{ev: store.QueryEvent{Err: s.translate(name, fn())}}
	}
	start := time.Now()
	err := s.translate(name, fn())
	end := time.Now()
	return report{ctx: ctx, ev: store.QueryEvent{Name: name, SQL: query, Duration: end.Sub(start), End: end, Err: err}}
}

// report hands r to the hook, if there is one.
func (s *Store) report(r report) {
	if s.onQuery != nil {
		s.onQuery(r.ctx, r.ev)
	}
}

// observeTx is observe for a statement of tx, the writer's open
// transaction: its report waits with the group until the write it
// belongs to has let the writer go (write).
func (s *Store) observeTx(ctx context.Context, tx *sql.Tx, name, query string, fn func() error) error {
	r := s.timed(ctx, name, query, fn)
	// Only the holder of the writer runs statements on its transaction,
	// and open changes only under the writer's lock: reading it is safe.
	if g := s.writer.lock.open; s.onQuery != nil && g != nil && g.tx == tx {
		g.reports = append(g.reports, r)
	} else {
		s.report(r)
	}
	return r.ev.Err
}

// translate is the package's translate, counting SQLITE_BUSY: this
// process's writes queue on the writer's lock, so a busy answer means
// another process (Litestream, a CLI, a second onebox) held the database.
func (s *Store) translate(name string, err error) error {
	if err != nil && isBusy(err) {
		s.busy.Add(1)
	}
	return translate(name, err)
}

// run is observe for a statement prepared once on p and reused.
func (s *Store) run(ctx context.Context, p *pool, name, query string, fn func(*sql.Stmt) error) error {
	return s.observe(ctx, name, query, func() error {
		if p.lock != nil {
			// First: preparing needs the writer's one connection too, and
			// a write must queue where the writer's holders are seen.
			if err := p.lock.lock(ctx, name); err != nil {
				return err
			}
			// The statement needs the connection an open group holds.
			p.lock.flush()
			defer p.lock.unlock()
		}
		st, err := p.stmt(ctx, query)
		if err != nil {
			return err
		}
		return fn(st)
	})
}

// inTx runs fn in a transaction on the writer, which the writer's DSN
// makes BEGIN IMMEDIATE, shared with the writes queued behind it (group
// commit, see group): fn runs in a savepoint of its own, and inTx
// returns once the COMMIT holding fn's changes is done. fn must use tx
// only: the writer has one connection and tx holds it.
func (s *Store) inTx(ctx context.Context, name string, fn func(tx *sql.Tx) error) error {
	return s.write(ctx, name, shared, func(w jobsqlite.Writer) error { return fn(w.(*sql.Tx)) })
}

// inTxAlone is inTx in a transaction of fn's own, committed before the
// writes queued behind it start: for a transaction that may be long
// (a migration, a copy's batch, a drill's hold), whose duration the
// writes before it should not wait out for their COMMIT.
func (s *Store) inTxAlone(ctx context.Context, name string, fn func(tx *sql.Tx) error) error {
	return s.write(ctx, name, alone, func(w jobsqlite.Writer) error { return fn(w.(*sql.Tx)) })
}

// execWrite runs fn, a single statement (or statements each of which may
// commit on its own), on the writer: as a write of the open group if
// there is one, else on the writer's pool, each statement its own
// transaction, when no other write waits (a transaction would only add
// BEGIN, a savepoint and COMMIT), else as the first write of a group.
// The job queue's Receive, Ack and Extend run here (jobs/sqlite
// Options.Exec).
func (s *Store) execWrite(ctx context.Context, name string, fn func(w jobsqlite.Writer) error) error {
	return s.write(ctx, name, statement, fn)
}

// writeMode is how a write takes part in group commit.
type writeMode int

const (
	shared    writeMode = iota // joins the open group, or begins one
	alone                      // commits the open group, then a transaction of its own
	statement                  // joins the open group, or runs on the pool when no write waits
)

// member is the savepoint each write of a group runs in.
const member = "onebox_write"

func (s *Store) write(ctx context.Context, name string, mode writeMode, fn func(w jobsqlite.Writer) error) error {
	l := s.writer.lock
	var foreign time.Duration // BEGIN IMMEDIATE's wait for SQLite's lock
	var pooled bool           // a statement that runs on the pool, alone
	begin := func() error {
		if err := l.lock(ctx, name); err != nil {
			return err
		}
		if mode == alone {
			l.flush()
		}
		if l.open != nil {
			return nil // joins the group
		}
		if mode == statement && !l.writersComing() {
			pooled = true
			return nil
		}
		l.beginning()
		// The transaction outlives this request when others join it: its
		// context ends with the request's only while BEGIN waits.
		txCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stop := context.AfterFunc(ctx, cancel)
		tx, err := s.writer.db.BeginTx(txCtx, nil)
		if !stop() && err == nil {
			// ctx ended during BEGIN, and database/sql rolls tx back.
			_ = tx.Rollback()
			err = ctx.Err()
		}
		foreign = l.began()
		if err != nil {
			cancel()
			l.unlockForeign(foreign)
			return err
		}
		l.open = &group{tx: tx, cancel: cancel, began: time.Now(), done: make(chan struct{})}
		return nil
	}
	began := s.timed(ctx, name+"_begin", "BEGIN IMMEDIATE", begin)
	if began.ev.Err != nil {
		s.report(began) // the writer is not held
		return began.ev.Err
	}
	// Reported once this write has let the writer go: after every return
	// below.
	defer s.report(began)
	if pooled {
		// No group is open, so the writer's one connection is free.
		defer l.unlock()
		return fn(s.writer.db)
	}
	g := l.open
	g.members++
	ferr, err := inSavepoint(ctx, g.tx, fn)
	reports := g.reports // fn's statements' (observeTx)
	g.reports = nil
	if err != nil {
		// No write of the group commits.
		err = s.translate(name+"_commit", fmt.Errorf("the transaction shared by %d writes failed: %w", g.members, errors.Join(ferr, err)))
		l.end(err)
	}
	l.unlockForeign(foreign) // hands the group on, or commits it (unless it broke above)
	for _, r := range reports {
		s.report(r)
	}
	if err != nil {
		return err
	}
	if ferr != nil {
		return ferr // its savepoint is rolled back; the others commit
	}
	return s.observe(ctx, name+"_commit", "COMMIT", func() error {
		<-g.done
		return g.err
	})
}

// inSavepoint runs fn in a savepoint of tx, released when fn succeeds and
// rolled back when it fails (fnErr). err is the savepoint's own failure:
// SQLite rolled the transaction back (some errors, an interrupted write,
// do) or it cannot go on. The savepoint's own statements run whatever
// ctx does: database/sql would not run them for a context that ended,
// and a savepoint neither released nor rolled back takes the other
// writes of the group down with this one. (fn's statements are not
// interrupted either once they run: see uninterrupted.)
func inSavepoint(ctx context.Context, tx *sql.Tx, fn func(w jobsqlite.Writer) error) (fnErr, err error) {
	ctx = context.WithoutCancel(ctx)
	if _, err := tx.ExecContext(ctx, "SAVEPOINT "+member); err != nil {
		return nil, err
	}
	if fnErr = fn(tx); fnErr == nil {
		_, err = tx.ExecContext(ctx, "RELEASE "+member)
		return nil, err
	}
	if _, err = tx.ExecContext(ctx, "ROLLBACK TO "+member); err == nil {
		_, err = tx.ExecContext(ctx, "RELEASE "+member)
	}
	return fnErr, err
}

// txExec runs the statement named name in tx. Statements in a
// transaction are not prepared through the writer pool: its one
// connection is the transaction's until it ends.
func (s *Store) txExec(ctx context.Context, tx *sql.Tx, name, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := s.observeTx(ctx, tx, name, query, func() error {
		var err error
		res, err = tx.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

// txExecOne is txExec for an UPDATE or DELETE that must match a row:
// none is store.ErrNotFound.
func (s *Store) txExecOne(ctx context.Context, tx *sql.Tx, name, query string, args ...any) error {
	return s.observeTx(ctx, tx, name, query, func() error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		return affectedOne(res)
	})
}

// translate maps driver errors to the store's sentinels and names the
// query. The driver's message is kept as text, not as a wrapped error,
// so callers cannot come to depend on driver types.
func translate(name string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite %s: %w", name, store.ErrNotFound)
	}
	if isBusy(err) {
		return fmt.Errorf("sqlite %s: %w (%v)", name, store.ErrBusy, err)
	}
	var serr *sqlite.Error
	if errors.As(err, &serr) {
		switch code := serr.Code(); {
		case code&0xff == sqlite3.SQLITE_FULL:
			return fmt.Errorf("sqlite %s: %w (%v)", name, store.ErrFull, err)
		case code == sqlite3.SQLITE_CONSTRAINT_UNIQUE, code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("sqlite %s: %w (%v)", name, store.ErrConflict, err)
		case code == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			// Every foreign key names a parent row (the user of a session
			// or photo, the photo of an idempotency key): it is gone.
			return fmt.Errorf("sqlite %s: %w (%v)", name, store.ErrNotFound, err)
		case code == sqlite3.SQLITE_CONSTRAINT_CHECK:
			// A value outside its column's domain, such as a photo status.
			return fmt.Errorf("sqlite %s: %w (%v)", name, store.ErrInvalid, err)
		}
	}
	return fmt.Errorf("sqlite %s: %w", name, err)
}

// isBusy reports whether err is the driver's SQLITE_BUSY or SQLITE_LOCKED.
func isBusy(err error) bool {
	var serr *sqlite.Error
	if !errors.As(err, &serr) {
		return false
	}
	// Extended result codes are on: the primary code is the low byte.
	code := serr.Code() & 0xff
	return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
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

// readOne runs the query named name, a read of one row by key, and
// scans its row. No row is store.ErrNotFound.
func readOne[T any](ctx context.Context, s *Store, f store.Freshness, name, query string, scan func(scanner, *T) error, args ...any) (T, error) {
	var v T
	err := s.readKey(ctx, f, name, query, func(r scanner) error { return scan(r, &v) }, args...)
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// readKey runs query, a read of one row by key, on the key reader and
// hands its row to scan. It gives up if ctx ends before it gets a
// connection, but does not watch ctx once the statement runs: such a
// read takes microseconds, and watching costs more than the read
// (database/sql and the driver each start a goroutine per statement to
// wait on ctx.Done, a quarter of BenchmarkUserByID). The price: should
// another process hold an exclusive lock, the read waits out
// busy_timeout whatever ctx's deadline.
//
// With store.MayBeStale the read may share a snapshot (keyReader).
func (s *Store) readKey(ctx context.Context, f store.Freshness, name, query string, scan func(scanner) error, args ...any) error {
	return s.observe(ctx, name, query, func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return s.keys.read(ctx, f == store.MayBeStale, query, args, scan)
	})
}

// queryAll runs the query named name, prepared on p, and scans every
// row, as collect does.
func queryAll[T any](ctx context.Context, s *Store, p *pool, name, query string, scan func(scanner, *T) error, args ...any) ([]T, error) {
	var vs []T
	if p.gate != nil {
		// A read's snapshot pins the WAL frames written after it began:
		// bounded in time, it bounds the WAL (checkpoint.go).
		p.gate.RLock()
		defer p.gate.RUnlock()
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.maxRead)
		defer cancel()
	}
	err := s.run(ctx, p, name, query, func(st *sql.Stmt) error {
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		vs, err = sqlutil.Collect(rows, scan)
		return err
	})
	if err != nil {
		return nil, err
	}
	return vs, nil
}

// scanner is a *sql.Row or *sql.Rows; the alias keeps the scan
// functions' signatures short.
type scanner = sqlutil.Scanner

// timeFormat is RFC 3339 in UTC with a fixed nine-digit fraction, so the
// text order of stored times is their time order.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string {
	return t.UTC().Format(timeFormat)
}

// textTime scans a time stored by formatTime into a UTC time.Time.
type textTime struct{ t *time.Time }

func (tt textTime) Scan(src any) error {
	s, ok := src.(string)
	if !ok {
		return fmt.Errorf("time column: got %T, want TEXT", src)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	*tt.t = t.UTC()
	return nil
}
