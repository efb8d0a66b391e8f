// Package postgres implements jobs.Queue on goqite's table in a
// PostgreSQL database, the store's own (store/postgres), so a job commits
// in the same transaction as the row it belongs to. Jobs are sent as
// goqite's own Send and SendTx (SQLFlavorPostgreSQL) send them, through
// database/sql over the store's pgx pool, in one INSERT that also sets
// their fair key and turn.
//
// Fair queueing (jobs.Message.FairKey) is jobs/sqlite's, in the same
// columns and with the same index (FairSchema): Send gives each message
// a turn one past its key's last one still queued and never before the
// turn of the next message Receive would take; Receive takes the lowest
// turns first. Two transactions enqueueing for the same key at once may
// give both messages the same turn: they then go in age order, as before.
//
// Receiving and acking are this package's own SQL on goqite's table, for
// the reasons jobs/sqlite gives (batches, the received count, no
// MaxReceive, Ack and Extend without the kind) and one more: goqite's
// PostgreSQL Receive, run by two workers at once, either fails to
// serialize (it asks for SERIALIZABLE) or, under READ COMMITTED, hands
// both the same message. Receive here picks its batch with FOR UPDATE
// SKIP LOCKED, so concurrent receivers take disjoint batches and never
// wait for one another. See bench/queue -postgres for how it compares
// with goqite's own Receive and Delete.
//
// Leases are goqite's received count, as in jobs/sqlite: Extend, Retry
// and DeadLetter match "and received = $n", Ack deletes by (id, received)
// pairs unnested from two arrays.
//
// Retry, DeadLetter, Redrive, Stats and Dead have no goqite counterpart:
// they are this package's SQL on goqite's table and its own tables, each
// one statement.
//
// Times are Go's clock, as goqite's are: Send's delay, Receive's
// visibility and Retry's time are computed in Go and compared with
// goqite's timeout column, so goqite's own operations and these agree.
// Only goqite's defaults (created, and the timeout of a redriven message)
// are the database's now().
//
// Unlike jobs/sqlite, whose rowid breaks ties, messages of one priority
// sent in one transaction share goqite's created (now() is the
// transaction's start), so their order among themselves is unspecified;
// so is the order of messages dead-lettered in the same microsecond.
package postgres

import (
	"cmp"
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"maragu.dev/goqite"

	"onebox/jobs"
	"onebox/jobs/internal/goqitesql"
)

// Schema creates goqite's table, trigger and index and this package's
// own tables. It is idempotent; the store runs it as one migration step,
// so once released its text stays: a schema change is a new exported
// step. It needs the pgcrypto extension, which the store creates.
//
//go:embed schema.sql
var Schema string

// FairSchema adds fair queueing to Schema's table: the key and turn of
// each message, and the index Receive takes turns by. It is idempotent;
// the store runs it after Schema, as a migration step of its own.
//
//go:embed fair.sql
var FairSchema string

// queueName is the queue's name in jobs_dead, and with a colon the
// prefix of its goqite queues: "jobs:photo.process".
const (
	queueName   = "jobs"
	queuePrefix = queueName + ":"
)

// Sender enqueues jobs into goqite's table.
type Sender = goqitesql.Sender

// NewSender returns a Sender on db, a database where Schema and
// FairSchema have run.
func NewSender(db *sql.DB) *Sender {
	return goqitesql.NewSender(db, goqite.SQLFlavorPostgreSQL, goqitesql.Turn{SQL: turnSQL, Time: func(t time.Time) any { return t }}, queuePrefix, "jobs/postgres")
}

// turnSQL gives the row goqite's Send just inserted its fair key and
// turn, as jobs/sqlite computes them: both index lookups, the first in
// the partial index of keyed messages; the new row is left out of both,
// and, like jobs/sqlite, a message without a key at turn 0 is not
// written again.
const turnSQL = `update goqite set fair_key = $3::text, fair_rank = t.rank
from (select greatest(
	coalesce((select fair_rank + 1 from goqite where queue = $2 and fair_key = $3::text and fair_key <> '' order by fair_rank desc limit 1), 0),
	coalesce((select fair_rank from goqite where queue = $2 and timeout <= $4 and id <> $1 order by priority desc, fair_rank, created limit 1), 0)) as rank) as t
where id = $1 and ($3::text <> '' or t.rank <> 0)`

// Options configure New. Every field has a default.
type Options struct {
	// Logger reports messages dead-lettered because their body does not
	// decode. Default: discard.
	Logger *slog.Logger
}

// Queue is a jobs.Queue on one PostgreSQL database; its Send and SendTx
// are its Sender's, goqite's own. It is safe for concurrent use, from
// any number of processes on the same database.
type Queue struct {
	*Sender
	db  *sql.DB
	log *slog.Logger
}

var _ jobs.Queue = (*Queue)(nil)

// New returns a Queue on db, database/sql over the store's pgx pool
// (stdlib.OpenDBFromPool) or sql.Open("pgx", url), where Schema has run.
func New(db *sql.DB, o Options) *Queue {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Queue{Sender: NewSender(db), db: db, log: o.Logger}
}

// receiveSQL takes up to $3 visible messages of queue $1 in one
// statement. FOR UPDATE SKIP LOCKED makes concurrent receivers pick
// disjoint rows without waiting: a row another receiver is taking is
// passed over, and the next visible one taken instead. Without it, under
// READ COMMITTED, a receiver that waited for another's row lock would
// recheck only the join, not the visibility, and take the same message.
// The CTE is materialized (row locks keep it from being inlined), so its
// LIMIT holds. The ORDER BY, turns before age, follows FairSchema's
// index.
const receiveSQL = `with picked as (
	select id from goqite
	where queue = $1 and timeout <= $2
	order by priority desc, fair_rank, created
	limit $3
	for update skip locked)
update goqite g set timeout = $4, received = g.received + 1
from picked where g.id = picked.id
returning g.id, g.body, g.received, g.priority, g.fair_rank, g.created`

// Receive takes up to max visible messages of kind. Bodies that do not
// decode are dead-lettered and logged.
func (q *Queue) Receive(ctx context.Context, kind string, max int, visibility time.Duration) ([]jobs.Message, error) {
	if kind == "" {
		return nil, errors.New("jobs/postgres receive: empty kind")
	}
	if max <= 0 {
		return nil, nil
	}
	now := time.Now()
	rows, err := q.db.QueryContext(ctx, receiveSQL, queuePrefix+kind, now, max, now.Add(visibility))
	if err != nil {
		return nil, fmt.Errorf("jobs/postgres receive: %w", err)
	}
	type received struct {
		goqitesql.Received
		priority int
		rank     int64
		created  time.Time
	}
	var got []received
	err = goqitesql.Each(rows, func(rows *sql.Rows) error {
		var r received
		var id string
		var body []byte
		var attempt int
		if err := rows.Scan(&id, &body, &attempt, &r.priority, &r.rank, &r.created); err != nil {
			return err
		}
		r.Received = goqitesql.Decode(id, attempt, body)
		got = append(got, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jobs/postgres receive: %w", err)
	}
	// RETURNING gives no order; ids break ties so the order is stable.
	slices.SortFunc(got, func(a, b received) int {
		return cmp.Or(cmp.Compare(b.priority, a.priority), cmp.Compare(a.rank, b.rank), a.created.Compare(b.created), strings.Compare(a.Msg.ID, b.Msg.ID))
	})
	msgs := make([]jobs.Message, 0, len(got))
	for _, r := range got {
		if r.Keep(ctx, q.log, kind, q.DeadLetter) {
			msgs = append(msgs, r.Msg)
		}
	}
	return msgs, nil
}

// existsSQL tells a lost lease from a message that is gone (goqitesql.Settled).
const existsSQL = `select 1 from goqite where id = $1`

// Extend keeps a message invisible for visibility from now.
func (q *Queue) Extend(ctx context.Context, r jobs.Receipt, visibility time.Duration) error {
	res, err := q.db.ExecContext(ctx, `update goqite set timeout = $1 where id = $2 and received = $3`, time.Now().Add(visibility), r.ID, goqitesql.Token(r.Lease))
	if err := goqitesql.Settled(ctx, q.db, existsSQL, r.ID, res, err); err != nil {
		return fmt.Errorf("jobs/postgres extend %s: %w", r.ID, err)
	}
	return nil
}

// ackSQL deletes a batch of (id, received) pairs in one statement, each
// a lookup of goqite's primary key.
const ackSQL = `delete from goqite g using unnest($1::text[], $2::int[]) as a(id, received)
where g.id = a.id and g.received = a.received`

// Ack deletes the messages in one statement.
func (q *Queue) Ack(ctx context.Context, rs ...jobs.Receipt) error {
	if len(rs) == 0 {
		return nil
	}
	ids, counts := goqitesql.Leases(rs)
	res, err := q.db.ExecContext(ctx, ackSQL, ids, counts)
	if err != nil {
		return fmt.Errorf("jobs/postgres ack: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || int(n) == len(ids) {
		return err
	}
	// Fewer deleted: those still there were received again since.
	rows, err := q.db.QueryContext(ctx, `select id from goqite where id = any($1)`, ids)
	if err == nil {
		err = goqitesql.Lost(rows)
	}
	if err != nil {
		return fmt.Errorf("jobs/postgres ack: %w", err)
	}
	return nil
}

// retrySQL makes message $1, under lease $4, visible at $2 and records
// the error: a message whose timeout is still its retry_at waits for its
// retry rather than runs (see statsSQL). Nothing is inserted when the
// message is gone or its lease lost.
const retrySQL = `with retried as (
	update goqite set timeout = $2 where id = $1 and received = $4 returning id)
insert into jobs_errors (id, last_error, retry_at)
select id, $3, $2 from retried
on conflict (id) do update set last_error = excluded.last_error, retry_at = excluded.retry_at`

// Retry makes the message visible at at and records lastErr.
func (q *Queue) Retry(ctx context.Context, r jobs.Receipt, at time.Time, lastErr string) error {
	res, err := q.db.ExecContext(ctx, retrySQL, r.ID, at, lastErr, goqitesql.Token(r.Lease))
	if err := goqitesql.Settled(ctx, q.db, existsSQL, r.ID, res, err); err != nil {
		return fmt.Errorf("jobs/postgres retry %s: %w", r.ID, err)
	}
	return nil
}

// deadLetterSQL moves message $1, under lease $6, to jobs_dead. The join reads jobs_errors
// as it was when the statement began, before the delete's cascade
// removes the message's row there.
const deadLetterSQL = `with gone as (
	delete from goqite where id = $1 and received = $6 returning id, queue, body, priority, received, created)
insert into jobs_dead (id, queue, kind, body, priority, last_error, attempts, created, died_at)
select g.id, $2, substr(g.queue, $3), g.body, g.priority, coalesce(nullif($4, ''), e.last_error, ''), g.received, g.created, $5
from gone g left join jobs_errors e on e.id = g.id`

// DeadLetter moves the message to jobs_dead.
func (q *Queue) DeadLetter(ctx context.Context, r jobs.Receipt, reason string) error {
	res, err := q.db.ExecContext(ctx, deadLetterSQL, r.ID, queueName, len(queuePrefix)+1, reason, time.Now(), goqitesql.Token(r.Lease))
	if err := goqitesql.Settled(ctx, q.db, existsSQL, r.ID, res, err); err != nil {
		return fmt.Errorf("jobs/postgres dead-letter %s: %w", r.ID, err)
	}
	return nil
}

// statsSQL counts one queue's messages per kind. A message is in flight
// when it was received and is invisible, unless Retry set that timeout.
// It visits every row of the queue. starts_with, not a range on the
// name, since a range's meaning depends on the database's collation.
const statsSQL = `select substr(g.queue, $1), count(*),
	count(*) filter (where g.received > 0 and g.timeout > $2 and (e.retry_at is null or e.retry_at <> g.timeout)),
	min(g.created)
from goqite g left join jobs_errors e on e.id = g.id
where starts_with(g.queue, $3)
group by g.queue`

// Stats counts messages per kind.
func (q *Queue) Stats(ctx context.Context) (jobs.Stats, error) {
	now := time.Now()
	st := jobs.Stats{Kinds: map[string]jobs.KindStats{}}
	rows, err := q.db.QueryContext(ctx, statsSQL, len(queuePrefix)+1, now, queuePrefix)
	if err != nil {
		return jobs.Stats{}, fmt.Errorf("jobs/postgres stats: %w", err)
	}
	err = goqitesql.Each(rows, func(r *sql.Rows) error {
		var kind string
		var total, inFlight int
		var oldest time.Time
		if err := r.Scan(&kind, &total, &inFlight, &oldest); err != nil {
			return err
		}
		goqitesql.AddKind(st, now, kind, total, inFlight, oldest)
		return nil
	})
	if err != nil {
		return jobs.Stats{}, fmt.Errorf("jobs/postgres stats: %w", err)
	}
	rows, err = q.db.QueryContext(ctx, `select kind, count(*) from jobs_dead where queue = $1 group by kind`, queueName)
	if err != nil {
		return jobs.Stats{}, fmt.Errorf("jobs/postgres stats: %w", err)
	}
	if err := goqitesql.CountDead(rows, st); err != nil {
		return jobs.Stats{}, fmt.Errorf("jobs/postgres stats: %w", err)
	}
	return st, nil
}

// deadWhere is the where clause of jobs_dead rows f matches, its
// placeholders numbered after the arguments args already holds.
func deadWhere(f jobs.DeadFilter, args []any) (string, []any) {
	args = append(args, queueName)
	where := fmt.Sprintf(`queue = $%d`, len(args))
	if len(f.IDs) > 0 {
		args = append(args, f.IDs)
		where += fmt.Sprintf(` and id = any($%d)`, len(args))
	}
	if f.Kind != "" {
		args = append(args, f.Kind)
		where += fmt.Sprintf(` and kind = $%d`, len(args))
	}
	if f.Error != "" {
		args = append(args, f.Error)
		where += fmt.Sprintf(` and strpos(last_error, $%d) > 0`, len(args))
	}
	return where, args
}

// Dead lists the dead messages f matches, newest first. A body that
// does not decode is listed with its kind and no payload.
func (q *Queue) Dead(ctx context.Context, f jobs.DeadFilter, limit int) ([]jobs.DeadMessage, error) {
	where, args := deadWhere(f, nil)
	args = append(args, limit)
	rows, err := q.db.QueryContext(ctx, `select id, kind, body, last_error, attempts, died_at from jobs_dead
where `+where+fmt.Sprintf(` order by died_at desc, id desc limit $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("jobs/postgres dead: %w", err)
	}
	out := []jobs.DeadMessage{}
	err = goqitesql.Each(rows, func(r *sql.Rows) error {
		var id, kind, lastErr string
		var body []byte
		var attempts int
		var diedAt time.Time
		if err := r.Scan(&id, &kind, &body, &lastErr, &attempts, &diedAt); err != nil {
			return err
		}
		out = append(out, goqitesql.DeadMessage(id, kind, body, attempts, lastErr, diedAt))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jobs/postgres dead: %w", err)
	}
	return out, nil
}

// Redrive moves the dead messages f matches back into their goqite
// queues under new ids, visible now and with received = 0 (goqite's
// defaults), behind the messages already waiting, in one statement.
func (q *Queue) Redrive(ctx context.Context, f jobs.DeadFilter) (int, error) {
	where, args := deadWhere(f, []any{queuePrefix})
	res, err := q.db.ExecContext(ctx, `with moved as (
	delete from jobs_dead where `+where+` returning kind, body, priority, created)
insert into goqite (queue, body, priority)
select $1 || kind, body, priority from moved order by created`, args...)
	n, err := goqitesql.Affected(res, err)
	if err != nil {
		return 0, fmt.Errorf("jobs/postgres redrive: %w", err)
	}
	return n, nil
}

// PruneDead deletes up to limit dead messages that died before before,
// oldest first, along jobs_dead's (queue, died_at) index.
func (q *Queue) PruneDead(ctx context.Context, before time.Time, limit int) (int, error) {
	res, err := q.db.ExecContext(ctx, `delete from jobs_dead where id in (
	select id from jobs_dead where queue = $1 and died_at < $2 order by died_at limit $3)`, queueName, before, limit)
	n, err := goqitesql.Affected(res, err)
	if err != nil {
		return 0, fmt.Errorf("jobs/postgres prune dead: %w", err)
	}
	return n, nil
}

// PruneDeadBeyond deletes up to limit of the oldest dead messages beyond
// the newest keep, along jobs_dead's (queue, died_at) index: the
// complement of Dead's order (died_at desc, id desc).
func (q *Queue) PruneDeadBeyond(ctx context.Context, keep, limit int) (int, error) {
	res, err := q.db.ExecContext(ctx, `delete from jobs_dead where id in (
	select id from jobs_dead where queue = $1 order by died_at, id
	limit least($3, greatest(0, (select count(*) from jobs_dead where queue = $1) - $2)))`, queueName, keep, limit)
	n, err := goqitesql.Affected(res, err)
	if err != nil {
		return 0, fmt.Errorf("jobs/postgres prune dead beyond %d: %w", keep, err)
	}
	return n, nil
}
