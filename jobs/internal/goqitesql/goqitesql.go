// Package goqitesql holds what jobs/sqlite and jobs/postgres share on
// goqite's table apart from SQL: sending, decoding what Receive took, and
// reading rows. The SQL, whose dialects differ, stays in each backend.
package goqitesql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"maragu.dev/goqite"

	"onebox/jobs"
)

// Sender enqueues jobs with goqite's own SendAndGetIDTx, then gives the
// row its fair key and turn with the backend's Turn statement, in the
// same transaction. It makes one goqite.Queue per kind on first use and
// keeps it; kinds are the program's own constants, so the set stays
// small. It is safe for concurrent use.
type Sender struct {
	db     *sql.DB
	flavor goqite.SQLFlavor
	turn   Turn
	prefix string // of each kind's goqite queue name
	errs   string // prefix of errors: "jobs/sqlite"

	// InTx, when set, runs RunTx's transactions (Send's among them)
	// instead of a BeginTx of their own: the store's, which queues them
	// with the store's writes and may share their COMMIT. Set it before
	// first use.
	InTx func(ctx context.Context, name string, fn func(tx *sql.Tx) error) error

	mu     sync.Mutex
	queues map[string]*goqite.Queue // by kind
}

// Turn is a backend's statement that gives the row goqite just inserted
// its fair key and turn, and how it writes a time. The statement takes,
// in order: the row's id, the goqite queue name, the fair key, and now;
// it returns nothing. It sets fair_key, and fair_rank: the key's turn,
// one past the key's last waiting or running message, and never before
// the turn of the message a Receive would take next, so a key that had
// nothing waiting joins the current round instead of jumping ahead of
// it. The new row itself must not count in either lookup. A row without
// a key whose turn is 0, as goqite inserted it, need not be written.
type Turn struct {
	SQL  string
	Time func(time.Time) any
	// KeyedOnly: the schema gives a message without a key its turn as
	// goqite inserts it (a trigger), so SQL runs for keyed messages only.
	KeyedOnly bool
}

// NewSender returns a Sender on db, whose goqite queues are named
// prefix+kind; its errors start with pkg.
func NewSender(db *sql.DB, flavor goqite.SQLFlavor, turn Turn, prefix, pkg string) *Sender {
	if db == nil {
		panic(pkg + ": nil database")
	}
	return &Sender{db: db, flavor: flavor, turn: turn, prefix: prefix, errs: pkg, queues: map[string]*goqite.Queue{}}
}

// goqite returns kind's goqite queue. Its MaxReceive and Timeout apply
// only to goqite's own Receive, which the backends do not call.
func (s *Sender) goqite(kind string) *goqite.Queue {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queues[kind]
	if !ok {
		q = goqite.New(goqite.NewOpts{DB: s.db, Name: s.prefix + kind, SQLFlavor: s.flavor})
		s.queues[kind] = q
	}
	return q
}

// RunTx runs fn, named name, in a write transaction: InTx's, or one of
// its own on the Sender's database. fn's error comes back as it is.
func (s *Sender) RunTx(ctx context.Context, name string, fn func(tx *sql.Tx) error) error {
	if s.InTx != nil {
		return s.InTx(ctx, name, fn)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Send enqueues m in a transaction of its own (RunTx's). It fails with
// jobs.ErrMalformed if m has no kind.
func (s *Sender) Send(ctx context.Context, m jobs.Message, o jobs.SendOptions) error {
	// Encoded first: the transaction may hold the writer for others.
	body, err := jobs.Encode(m)
	if err != nil {
		return err
	}
	if err := s.RunTx(ctx, "jobs_send", func(tx *sql.Tx) error { return s.send(ctx, tx, m, body, o) }); err != nil {
		return fmt.Errorf("%s send: %w", s.errs, err)
	}
	return nil
}

// SendTx enqueues m in tx, so the job exists if and only if tx
// commits: goqite's row, with onebox's envelope as its body and goqite's
// own delay and priority, then its turn. It writes one goqite row and
// nothing else. It fails with jobs.ErrMalformed if m has no kind.
func (s *Sender) SendTx(ctx context.Context, tx *sql.Tx, m jobs.Message, o jobs.SendOptions) error {
	body, err := jobs.Encode(m)
	if err != nil {
		return err
	}
	if err := s.send(ctx, tx, m, body, o); err != nil {
		return fmt.Errorf("%s send: %w", s.errs, err)
	}
	return nil
}

// send is SendTx with m's body encoded, its errors not yet named.
func (s *Sender) send(ctx context.Context, tx *sql.Tx, m jobs.Message, body []byte, o jobs.SendOptions) error {
	now := time.Now()
	// goqite panics on a negative delay; jobs reads one as none.
	id, err := s.goqite(m.Kind).SendAndGetIDTx(ctx, tx, goqite.Message{Body: body, Delay: max(o.Delay, 0), Priority: o.Priority})
	if err != nil {
		return err
	}
	if m.FairKey == "" && s.turn.KeyedOnly {
		return nil
	}
	if _, err := tx.ExecContext(ctx, s.turn.SQL, string(id), s.prefix+m.Kind, m.FairKey, s.turn.Time(now)); err != nil {
		return fmt.Errorf("turn: %w", err)
	}
	return nil
}

// Received is one message Receive took: decoded, or Err why its body
// does not decode.
type Received struct {
	Msg jobs.Message
	Err error
}

// Decode decodes body, read from goqite's table, into the message with
// goqite's id and received count as its ID and Attempt, and that count as
// its lease.
//
// The lease is goqite's received count, which every receive increments
// in the statement that hands the message out: a statement that settles
// a delivery matches id and count, so once the message was received again
// the older delivery's statement matches no row. It costs Receive
// nothing (no new column, no random token to make, the same statement)
// and Ack, Extend, Retry and DeadLetter one more column in their WHERE.
// The count starts again only when Redrive re-inserts a dead message,
// and Redrive gives it a new id, so an old lease never becomes current
// again.
func Decode(id string, attempt int, body []byte) Received {
	m, err := jobs.Decode(body)
	m.ID, m.Attempt, m.Lease = id, attempt, strconv.Itoa(attempt)
	return Received{Msg: m, Err: err}
}

// Token is the received count a lease names; -1, which no row has, for
// a lease this package did not hand out.
func Token(lease string) int {
	n, err := strconv.Atoi(lease)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// Querier is what Settled asks: a pool or a transaction.
type Querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Settled turns the result of a statement on one message's current lease
// into nil, or, when it matched no row, into jobs.ErrLeaseLost if
// exists, a query of one placeholder for the id, finds the message
// (received again since), else jobs.ErrNotFound. The lookup runs only on
// that rare path.
func Settled(ctx context.Context, q Querier, exists, id string, res sql.Result, err error) error {
	if err = AffectedOne(res, err); !errors.Is(err, jobs.ErrNotFound) {
		return err
	}
	var one int
	switch err := q.QueryRowContext(ctx, exists, id).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return jobs.ErrNotFound
	case err != nil:
		return err
	}
	return jobs.ErrLeaseLost
}

// Leases splits rs into ids and their received counts, without repeats.
func Leases(rs []jobs.Receipt) (ids []string, counts []int) {
	seen := make(map[string]bool, len(rs))
	for _, r := range rs {
		if seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		ids = append(ids, r.ID)
		counts = append(counts, Token(r.Lease))
	}
	return ids, counts
}

// Lost is Ack's error once a delete matched fewer rows than ids: the
// ids still present, from rows of (id), were received again since.
func Lost(rows *sql.Rows) error {
	var ids []string
	err := Each(rows, func(r *sql.Rows) error {
		var id string
		if err := r.Scan(&id); err != nil {
			return err
		}
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	return &jobs.LeaseLostError{IDs: ids}
}

// Keep reports whether r decoded. One that did not is logged and
// dead-lettered; if dead-lettering fails it comes back after its
// visibility and is tried again.
func (r Received) Keep(ctx context.Context, log *slog.Logger, kind string, deadLetter func(ctx context.Context, r jobs.Receipt, reason string) error) bool {
	if r.Err == nil {
		return true
	}
	log.ErrorContext(ctx, "jobs: dead-lettering a malformed message", "job_id", r.Msg.ID, "kind", kind, "error", r.Err)
	if err := deadLetter(ctx, r.Msg.Receipt(), r.Err.Error()); err != nil {
		log.ErrorContext(ctx, "jobs: dead-letter malformed message", "job_id", r.Msg.ID, "error", err)
	}
	return false
}

// AddKind records a kind's counts from the stats query: total messages,
// those in flight and the created time of the oldest.
func AddKind(st jobs.Stats, now time.Time, kind string, total, inFlight int, oldest time.Time) {
	st.Kinds[kind] = jobs.KindStats{Queued: total - inFlight, InFlight: inFlight, OldestAge: max(now.Sub(oldest), 0)}
}

// CountDead adds to st the dead count of each kind, from rows of
// (kind, count), and closes rows.
func CountDead(rows *sql.Rows, st jobs.Stats) error {
	return Each(rows, func(r *sql.Rows) error {
		var kind string
		var n int
		if err := r.Scan(&kind, &n); err != nil {
			return err
		}
		ks := st.Kinds[kind]
		ks.Dead = n
		st.Kinds[kind] = ks
		return nil
	})
}

// DeadMessage is a row of jobs_dead as Dead lists it: a body that does
// not decode is listed with its kind and no payload.
func DeadMessage(id, kind string, body []byte, attempts int, lastErr string, diedAt time.Time) jobs.DeadMessage {
	m, err := jobs.Decode(body)
	if err != nil {
		m = jobs.Message{Kind: kind}
	}
	m.ID, m.Attempt = id, attempts
	return jobs.DeadMessage{Message: m, LastError: lastErr, DiedAt: diedAt}
}

// AffectedOne turns a statement that matched no row into jobs.ErrNotFound.
func AffectedOne(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return jobs.ErrNotFound
	}
	return nil
}

// Affected is how many rows a statement changed.
func Affected(res sql.Result, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Each calls fn for every row and closes rows.
func Each(rows *sql.Rows, fn func(*sql.Rows) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
