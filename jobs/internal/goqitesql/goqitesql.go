// Package goqitesql holds what jobs/sqlite and jobs/postgres share on
// goqite's table apart from SQL: sending, decoding what Receive took, and
// reading rows. The SQL, whose dialects differ, stays in each backend.
package goqitesql

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"onebox/jobs"
)

// Sender enqueues jobs as goqite's Send and SendTx would, one row of
// goqite's table each, plus the turn of fair queueing: the backend's
// insert statement also sets fair_key (jobs.Message.FairKey) and
// fair_rank (see Insert). It is safe for concurrent use.
type Sender struct {
	db     *sql.DB
	insert Insert
	prefix string // of each kind's goqite queue name
	errs   string // prefix of errors: "jobs/sqlite"
}

// Insert is a backend's statement that enqueues one message, and how it
// writes a time. The statement takes, in order: the goqite queue name,
// the body, the time it becomes visible (goqite's timeout), the
// priority, the fair key, and now; it returns nothing. Besides goqite's
// columns it sets fair_key, and fair_rank: the key's turn, one past the
// key's last waiting or running message, and never before the turn of
// the message a Receive would take next, so a key that had nothing
// waiting joins the current round instead of jumping ahead of it.
type Insert struct {
	SQL  string
	Time func(time.Time) any
}

// NewSender returns a Sender on db, whose goqite queues are named
// prefix+kind; its errors start with pkg.
func NewSender(db *sql.DB, insert Insert, prefix, pkg string) *Sender {
	if db == nil {
		panic(pkg + ": nil database")
	}
	return &Sender{db: db, insert: insert, prefix: prefix, errs: pkg}
}

// Send enqueues m in a transaction of its own. It fails with
// jobs.ErrMalformed if m has no kind.
func (s *Sender) Send(ctx context.Context, m jobs.Message, o jobs.SendOptions) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s send: %w", s.errs, err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	if err := s.SendTx(ctx, tx, m, o); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s send: %w", s.errs, err)
	}
	return nil
}

// SendTx enqueues m in tx, so the job exists if and only if tx
// commits. It writes one goqite row and nothing else. It fails with
// jobs.ErrMalformed if m has no kind.
func (s *Sender) SendTx(ctx context.Context, tx *sql.Tx, m jobs.Message, o jobs.SendOptions) error {
	body, err := jobs.Encode(m)
	if err != nil {
		return err
	}
	now := time.Now()
	// A negative delay is none, as goqite's (which panics on one) reads it.
	if _, err := tx.ExecContext(ctx, s.insert.SQL, s.prefix+m.Kind, body, s.insert.Time(now.Add(max(o.Delay, 0))),
		o.Priority, m.FairKey, s.insert.Time(now)); err != nil {
		return fmt.Errorf("%s send: %w", s.errs, err)
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
// goqite's id and received count as its ID and Attempt.
func Decode(id string, attempt int, body []byte) Received {
	m, err := jobs.Decode(body)
	m.ID, m.Attempt = id, attempt
	return Received{Msg: m, Err: err}
}

// Keep reports whether r decoded. One that did not is logged and
// dead-lettered; if dead-lettering fails it comes back after its
// visibility and is tried again.
func (r Received) Keep(ctx context.Context, log *slog.Logger, kind string, deadLetter func(ctx context.Context, id, reason string) error) bool {
	if r.Err == nil {
		return true
	}
	log.ErrorContext(ctx, "jobs: dead-lettering a malformed message", "job_id", r.Msg.ID, "kind", kind, "error", r.Err)
	if err := deadLetter(ctx, r.Msg.ID, r.Err.Error()); err != nil {
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
