// Package goqitesql holds what jobs/sqlite and jobs/postgres share on
// goqite's table apart from SQL: sending with goqite's own Send and
// SendTx, decoding what Receive took, and reading rows. The SQL, whose
// dialects differ, stays in each backend.
package goqitesql

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"maragu.dev/goqite"

	"onebox/jobs"
)

// Sender enqueues jobs with goqite's own Send and SendTx. It makes one
// goqite.Queue per kind on first use and keeps it; kinds are the
// program's own constants, so the set stays small. It is safe for
// concurrent use.
type Sender struct {
	db     *sql.DB
	flavor goqite.SQLFlavor
	prefix string // of each kind's goqite queue name
	errs   string // prefix of errors: "jobs/sqlite"

	mu     sync.Mutex
	queues map[string]*goqite.Queue // by kind
}

// NewSender returns a Sender on db, whose goqite queues are named
// prefix+kind; its errors start with pkg.
func NewSender(db *sql.DB, flavor goqite.SQLFlavor, prefix, pkg string) *Sender {
	if db == nil {
		panic(pkg + ": nil database")
	}
	return &Sender{db: db, flavor: flavor, prefix: prefix, errs: pkg, queues: map[string]*goqite.Queue{}}
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

// message is m as goqite stores it: onebox's envelope as the body, and
// goqite's own delay and priority. It fails with jobs.ErrMalformed if m
// has no kind.
func message(m jobs.Message, o jobs.SendOptions) (goqite.Message, error) {
	body, err := jobs.Encode(m)
	if err != nil {
		return goqite.Message{}, err
	}
	// goqite panics on a negative delay; jobs reads one as none.
	return goqite.Message{Body: body, Delay: max(o.Delay, 0), Priority: o.Priority}, nil
}

// Send enqueues m in a transaction of its own, with goqite's Send. It
// fails with jobs.ErrMalformed if m has no kind.
func (s *Sender) Send(ctx context.Context, m jobs.Message, o jobs.SendOptions) error {
	gm, err := message(m, o)
	if err != nil {
		return err
	}
	if err := s.goqite(m.Kind).Send(ctx, gm); err != nil {
		return fmt.Errorf("%s send: %w", s.errs, err)
	}
	return nil
}

// SendTx enqueues m in tx with goqite's SendTx, so the job exists if and
// only if tx commits. It writes one goqite row and nothing else. It
// fails with jobs.ErrMalformed if m has no kind.
func (s *Sender) SendTx(ctx context.Context, tx *sql.Tx, m jobs.Message, o jobs.SendOptions) error {
	gm, err := message(m, o)
	if err != nil {
		return err
	}
	if err := s.goqite(m.Kind).SendTx(ctx, tx, gm); err != nil {
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
