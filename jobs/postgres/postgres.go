// Package postgres implements jobs.Queue on goqite's table in a
// PostgreSQL database, the store's own (store/postgres), so a job commits
// in the same transaction as the row it belongs to. Jobs are sent with
// goqite's own Send and SendTx (SQLFlavorPostgreSQL) through database/sql
// over the store's pgx pool.
package postgres

import (
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"sync"

	"maragu.dev/goqite"

	"onebox/jobs"
)

// Schema creates goqite's table, trigger and index and this package's
// own tables. It is idempotent; the store runs it as one migration step,
// so once released its text stays: a schema change is a new exported
// step. It needs the pgcrypto extension, which the store creates.
//
//go:embed schema.sql
var Schema string

// queueName is the queue's name in jobs_dead, and with a colon the
// prefix of its goqite queues: "jobs:photo.process".
const (
	queueName   = "jobs"
	queuePrefix = queueName + ":"
)

// Sender enqueues jobs with goqite's own Send and SendTx. It makes one
// goqite.Queue per kind on first use and keeps it. It is safe for
// concurrent use.
type Sender struct {
	db *sql.DB

	mu     sync.Mutex
	queues map[string]*goqite.Queue // by kind
}

// NewSender returns a Sender on db, a database where Schema has run.
func NewSender(db *sql.DB) *Sender {
	if db == nil {
		panic("jobs/postgres: nil database")
	}
	return &Sender{db: db, queues: map[string]*goqite.Queue{}}
}

func (s *Sender) goqite(kind string) *goqite.Queue {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queues[kind]
	if !ok {
		q = goqite.New(goqite.NewOpts{DB: s.db, Name: queuePrefix + kind, SQLFlavor: goqite.SQLFlavorPostgreSQL})
		s.queues[kind] = q
	}
	return q
}

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
		return fmt.Errorf("jobs/postgres send: %w", err)
	}
	return nil
}

// SendTx enqueues m in tx with goqite's SendTx, so the job exists if and
// only if tx commits. It fails with jobs.ErrMalformed if m has no kind.
func (s *Sender) SendTx(ctx context.Context, tx *sql.Tx, m jobs.Message, o jobs.SendOptions) error {
	gm, err := message(m, o)
	if err != nil {
		return err
	}
	if err := s.goqite(m.Kind).SendTx(ctx, tx, gm); err != nil {
		return fmt.Errorf("jobs/postgres send: %w", err)
	}
	return nil
}
