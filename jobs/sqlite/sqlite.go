// Package sqlite implements jobs.Queue on goqite (maragu.dev/goqite) in
// the store's own SQLite database, so a job is enqueued in the same
// transaction as the row it belongs to.
//
// Enqueueing is goqite's own SendAndGetIDTx, with onebox's envelope
// (jobs.Encode) as goqite's body, the delay as goqite's and the priority
// as goqite's; a keyed message then gets, by one UPDATE in the same
// transaction, two columns of onebox's own, its fair key and turn
// (below), and a message without a key its turn from a trigger inside
// goqite's INSERT. The statements run by their text; the store's writer
// keeps them compiled (internal/stmtcache), which halved an enqueue's
// CPU. The schema is goqite's table, trigger and index, made idempotent,
// plus this package's own tables (schema.sql), then FairSchema
// (fair.sql), RankedSchema (ranked.sql) and TurnSchema (turn.sql), which
// drops goqite's trigger: this package's UPDATEs set a message's updated
// time themselves.
//
// Fair queueing (jobs.Message.FairKey) is start-time fair queueing on the
// turns: Send gives a message the turn one past its key's last message
// still in the queue (waiting or running), and never a turn before that
// of the message Receive would take next; Receive takes the lowest turns
// first (then priority and age as before). So while user A has 1,000
// photos waiting at turns n…n+999, user B's one photo gets turn n, and
// goes right after A's next one: B waits for about one job, not a
// thousand. A key whose jobs are all done, or that never had any, joins
// the current round; one with a backlog keeps its place in each round and
// never loses it to newcomers. Turns are fixed when a job is enqueued, so
// Receive is one index range scan as before, however many keys wait:
// the cost is two index lookups more per Send, and for a keyed message
// one more index entry (written by Send, removed by Ack). A message
// without a key is not queued fairly: it takes the current turn, so
// keyless messages go in arrival order with the current round, and a
// burst of them goes before a backlog's next round. Retries keep their
// turn, so they go before later turns once due. Redriven dead letters
// come back with no key at turn 0: at the front, once.
//
// Receiving and acking are this package's own SQL on goqite's table,
// because goqite's Receive and Delete do not fit the Runner and are
// slower: goqite's Receive takes one message per transaction, with a
// visibility fixed per goqite.Queue, hides messages received MaxReceive
// times (the Runner counts attempts and dead-letters into jobs_dead
// itself) and does not return the received count (jobs.Message.Attempt);
// its Delete and Extend need the kind, which Ack and Extend are not
// given, and Extend does not report a message that is gone. Receive
// here takes up to max messages in one UPDATE … RETURNING and Ack
// deletes many in one DELETE. That is measurably faster, on the 2-core
// development box shared with other work (load average 14-17), each
// figure the median of 3, baseline and onebox in the same command:
//
//   - go test -bench 'ReceiveAck|GoqiteReceiveDelete' -count 3 (same
//     database setup, a preloaded queue): goqite's Receive + Delete
//     3,069 jobs/s; this package's Receive + Ack 5,228 jobs/s (1.7x) one
//     message at a time, 13,091 (4.3x) in batches of 10, 15,442 (5.0x)
//     in batches of 100.
//   - go run ./bench/queue -runs 3: the Runner draining a pre-filled
//     queue 9,478 jobs/s against goqite's Receive + Delete loop 3,565,
//     ratio 2.66x (2.55-3.43 over the runs); enqueue, run and ack
//     (stream, 4 producers) 5,171 against goqite's Send + Receive +
//     Delete 3,021, ratio 1.53x (1.35-2.07).
//
// Leases: a delivery's lease is goqite's received count, which the
// receiving UPDATE increments (see goqitesql.Decode for why the count and
// not a token column). Extend, Retry and DeadLetter add "AND received =
// ?" to their WHERE, and Ack joins its (id, received) pairs on goqite's
// primary key, so a worker whose visibility lapsed and whose message was
// received again changes nothing: goqite's own Extend and Delete take
// the id alone, and such a worker's late Delete would delete the job
// another worker is running. Only a statement that matched no row pays
// one more query, to tell jobs.ErrLeaseLost from jobs.ErrNotFound.
//
// Retry, DeadLetter, Redrive, Stats and Dead have no goqite counterpart:
// they are this package's SQL on goqite's table and its own tables.
//
// Each kind is its own goqite queue, "jobs:<kind>", so the index on
// (queue, priority, fair_rank, created) serves Receive by kind and Stats
// needs no JSON. A database holds one such queue.
//
// Times are wall-clock UTC text with milliseconds, as goqite writes them
// ('%Y-%m-%dT%H:%M:%fZ'), so text order is time order.
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"maragu.dev/goqite"

	"onebox/jobs"
	"onebox/jobs/internal/goqitesql"
)

// Schema creates goqite's table, trigger and index and this package's
// own tables. It is idempotent; the store runs it as one migration step,
// so once released its text stays: a schema change is a new exported
// step. goqite does not export its schema, so Schema holds a copy of
// goqite's schema_sqlite.sql with "if not exists" added, which
// TestSchemaIsGoqites compares with the goqite module in go.mod.
//
//go:embed schema.sql
var Schema string

// FairSchema adds fair queueing to Schema's table: the key and turn of
// each message, and the index Receive takes turns by. It runs once,
// after Schema, as a migration step of its own.
//
//go:embed fair.sql
var FairSchema string

// RankedSchema indexes the messages whose turn is not 0, so that Send
// finds at once that a queue has none (see turnSQL). It runs once, after
// FairSchema, as a migration step of its own. Send needs it: its turn
// statement names the index (INDEXED BY), which the planner passed over
// for a scan of the whole queue.
//
//go:embed ranked.sql
var RankedSchema string

// TurnSchema gives a message without a key its turn in goqite's
// INSERT (a trigger), and drops goqite's trigger that rewrote every
// updated row to set its updated time, which this package's UPDATEs set
// themselves (see turn.sql). It runs once, after RankedSchema. Send
// needs it: it runs turnSQL for keyed messages only.
//
//go:embed turn.sql
var TurnSchema string

// Options configure New. Every field has a default.
type Options struct {
	// Logger reports messages dead-lettered because their body does not
	// decode. Default: discard.
	Logger *slog.Logger
	// InTx runs the queue's transactions (Send, Retry, DeadLetter,
	// Redrive), each named for the store's logs and metrics: the store's
	// own write path, which queues them with the store's writes and
	// shares their COMMIT (store/sqlite's group commit). Default: a
	// transaction of the queue's own on the writer. Receive and Ack are
	// single statements on the writer either way.
	InTx func(ctx context.Context, name string, fn func(tx *sql.Tx) error) error
	// Exec runs the queue's single statements (Receive, Ack, Extend),
	// each named: the store's write path again, which runs fn in the
	// transaction open on the writer, sharing its COMMIT, or on the
	// writer's pool. Default: the queue's own prepared statements on the
	// writer.
	Exec func(ctx context.Context, name string, fn func(w Writer) error) error
}

// Queue is a jobs.Queue on one SQLite database; its Send and SendTx are
// its Sender's. It is safe for concurrent use. Make one per database and keep it: it prepares its
// statements on the writer on first use and keeps them until the pool
// closes.
type Queue struct {
	*Sender
	writer *sql.DB
	reader *sql.DB
	log    *slog.Logger
	execFn func(ctx context.Context, name string, fn func(w Writer) error) error // Options.Exec

	mu    sync.Mutex
	stmts map[string]*sql.Stmt // by SQL text, on the writer
}

// queueName is the queue's name in jobs_dead, and with a colon the
// prefix of its goqite queues: "jobs:photo.process".
const (
	queueName   = "jobs"
	queuePrefix = queueName + ":"
)

var _ jobs.Queue = (*Queue)(nil)

// New returns a Queue on the store's pools: writer must be the process's
// one writer connection (SetMaxOpenConns(1)), reader may be a query-only
// pool; both on a database where Schema, FairSchema, RankedSchema and
// TurnSchema have run.
func New(writer, reader *sql.DB, o Options) *Queue {
	if writer == nil || reader == nil {
		panic("jobs/sqlite: nil database")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	q := &Queue{Sender: NewSender(writer), writer: writer, reader: reader, log: o.Logger, execFn: o.Exec, stmts: map[string]*sql.Stmt{}}
	q.Sender.InTx = o.InTx
	return q
}

// TimeFormat is goqite's: UTC with milliseconds, so the text order of
// stored times is their time order.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

func format(t time.Time) string { return t.UTC().Format(TimeFormat) }

func parse(s string) (time.Time, error) { return time.Parse(TimeFormat, s) }

// Sender enqueues jobs into goqite's table. Send's transaction is BEGIN
// IMMEDIATE, by the writer's _txlock=immediate, like the store's.
type Sender = goqitesql.Sender

// NewSender returns a Sender on the store's writer, on a database where
// Schema, FairSchema, RankedSchema and TurnSchema have run.
func NewSender(writer *sql.DB) *Sender {
	return goqitesql.NewSender(writer, goqite.SQLFlavorSQLite, goqitesql.Turn{SQL: turnSQL, Time: func(t time.Time) any { return format(t) }, KeyedOnly: true}, queuePrefix, "jobs/sqlite")
}

// turnSQL gives a keyed message, which goqite's Send just inserted, its
// fair key and turn: one past the key's last turn in the queue, and at
// least the turn of the message Receive would take next (the first
// visible one in its order), so a key with nothing waiting joins the
// current round. Both are index lookups: the key's last turn one seek in
// the partial index of keyed messages (the literal condition on fair_key
// lets the planner use it), the next message a scan that passes only
// over the running messages before it. The new row, still without a
// key, is left out of both. A message without a key got its turn in the
// INSERT (TurnSchema's trigger), where the statement of its own that
// Send ran for it was a tenth of an enqueue's time (bench/queue).
const turnSQL = `UPDATE goqite SET fair_key = ?3, fair_rank = max(
	coalesce((SELECT fair_rank + 1 FROM goqite WHERE queue = ?2 AND fair_key = ?3 AND fair_key <> '' ORDER BY fair_rank DESC LIMIT 1), 0),
	coalesce((SELECT fair_rank FROM goqite WHERE queue = ?2 AND timeout <= ?4 AND id <> ?1 ORDER BY priority DESC, fair_rank, created LIMIT 1), 0))
WHERE id = ?1`

// receiveSQL takes a batch in one statement, on goqite's table; it is
// goqite's Receive without MaxReceive, for up to max messages, returning
// the received count (see the package comment for why and how much
// faster), and taking turns (fair_rank) before age. The ORDER BY follows
// FairSchema's index (rowid is its implicit last column), so it needs no
// sort.
const receiveSQL = `UPDATE goqite SET timeout = ?1, received = received + 1, updated = ?3
WHERE rowid IN (
	SELECT rowid FROM goqite
	WHERE queue = ?2 AND timeout <= ?3
	ORDER BY priority DESC, fair_rank, created, rowid
	LIMIT ?4)
RETURNING id, body, received, priority, fair_rank, created, rowid`

// Receive takes up to max visible messages of kind. Bodies that do not
// decode are dead-lettered and logged.
func (q *Queue) Receive(ctx context.Context, kind string, max int, visibility time.Duration) ([]jobs.Message, error) {
	if kind == "" {
		return nil, errors.New("jobs/sqlite receive: empty kind")
	}
	if max <= 0 {
		return nil, nil
	}
	type received struct {
		goqitesql.Received
		id       string
		body     []byte
		attempt  int
		priority int
		rank     int64
		created  string
		rowid    int64
	}
	var got []received
	now := time.Now()
	err := q.write(ctx, "jobs_receive", func(w Writer) error {
		rows, err := w.QueryContext(ctx, receiveSQL, format(now.Add(visibility)), queuePrefix+kind, format(now), max)
		if err != nil {
			return err
		}
		return goqitesql.Each(rows, func(rows *sql.Rows) error {
			var r received
			if err := rows.Scan(&r.id, &r.body, &r.attempt, &r.priority, &r.rank, &r.created, &r.rowid); err != nil {
				return err
			}
			got = append(got, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("jobs/sqlite receive: %w", err)
	}
	// Decoded once the writer is free for others.
	for i := range got {
		got[i].Received = goqitesql.Decode(got[i].id, got[i].attempt, got[i].body)
	}
	// RETURNING gives no order.
	slices.SortFunc(got, func(a, b received) int {
		return cmp.Or(cmp.Compare(b.priority, a.priority), cmp.Compare(a.rank, b.rank), strings.Compare(a.created, b.created), cmp.Compare(a.rowid, b.rowid))
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
const existsSQL = `SELECT 1 FROM goqite WHERE id = ?`

// timeoutSQL sets a message's timeout under its lease: Extend's and
// Retry's.
const timeoutSQL = `UPDATE goqite SET timeout = ?1, updated = ?4 WHERE id = ?2 AND received = ?3`

// Extend keeps a message invisible for visibility from now.
func (q *Queue) Extend(ctx context.Context, r jobs.Receipt, visibility time.Duration) error {
	err := q.write(ctx, "jobs_extend", func(w Writer) error {
		now := time.Now()
		res, err := w.ExecContext(ctx, timeoutSQL, format(now.Add(visibility)), r.ID, goqitesql.Token(r.Lease), format(now))
		return goqitesql.Settled(ctx, w, existsSQL, r.ID, res, err)
	})
	if err != nil {
		return fmt.Errorf("jobs/sqlite extend %s: %w", r.ID, err)
	}
	return nil
}

// ackSQL deletes a batch; the ids and their leases travel as one JSON
// array of [id, received] pairs, so the statement is the same for any
// number of them. The pairs drive the join, each a lookup of goqite's
// primary key.
const ackSQL = `DELETE FROM goqite WHERE rowid IN (
	SELECT g.rowid FROM json_each(?) j JOIN goqite g ON g.id = j.value ->> 0 AND g.received = j.value ->> 1)`

// lostSQL finds, after an Ack deleted fewer rows than it was given, the
// ids still there: received again since.
const lostSQL = `SELECT g.id FROM json_each(?) j JOIN goqite g ON g.id = j.value ->> 0`

// Ack deletes the messages in one statement.
func (q *Queue) Ack(ctx context.Context, rs ...jobs.Receipt) error {
	if len(rs) == 0 {
		return nil
	}
	ids, counts := goqitesql.Leases(rs)
	pairs := make([][2]any, len(ids))
	for i := range ids {
		pairs[i] = [2]any{ids[i], counts[i]}
	}
	list, err := json.Marshal(pairs)
	if err != nil {
		return fmt.Errorf("jobs/sqlite ack: %w", err)
	}
	// The leases found lost are reported, not returned from the write:
	// the deletes of the others must commit.
	var lost error
	err = q.write(ctx, "jobs_ack", func(w Writer) error {
		res, err := w.ExecContext(ctx, ackSQL, string(list))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || int(n) == len(ids) {
			return err
		}
		rows, err := w.QueryContext(ctx, lostSQL, string(list))
		if err != nil {
			return err
		}
		lost = goqitesql.Lost(rows)
		var lle *jobs.LeaseLostError
		if lost != nil && !errors.As(lost, &lle) {
			return lost // reading them failed
		}
		return nil
	})
	if err = cmp.Or(err, lost); err != nil {
		return fmt.Errorf("jobs/sqlite ack: %w", err)
	}
	return nil
}

// Retry makes the message visible at at and records lastErr.
func (q *Queue) Retry(ctx context.Context, r jobs.Receipt, at time.Time, lastErr string) error {
	when := format(at)
	err := q.RunTx(ctx, "jobs_retry", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, timeoutSQL, when, r.ID, goqitesql.Token(r.Lease), format(time.Now()))
		if err := goqitesql.Settled(ctx, tx, existsSQL, r.ID, res, err); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO jobs_errors (id, last_error, retry_at) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET last_error = excluded.last_error, retry_at = excluded.retry_at`, r.ID, lastErr, when)
		return err
	})
	if err != nil {
		return fmt.Errorf("jobs/sqlite retry %s: %w", r.ID, err)
	}
	return nil
}

// DeadLetter moves the message to jobs_dead.
func (q *Queue) DeadLetter(ctx context.Context, r jobs.Receipt, reason string) error {
	err := q.RunTx(ctx, "jobs_dead_letter", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO jobs_dead (id, queue, kind, body, priority, last_error, attempts, created, died_at)
SELECT g.id, ?, substr(g.queue, ?), g.body, g.priority, coalesce(nullif(?, ''), e.last_error, ''), g.received, g.created, ?
FROM goqite g LEFT JOIN jobs_errors e ON e.id = g.id
WHERE g.id = ? AND g.received = ?`, queueName, len(queuePrefix)+1, reason, format(time.Now()), r.ID, goqitesql.Token(r.Lease))
		if err := goqitesql.Settled(ctx, tx, existsSQL, r.ID, res, err); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM goqite WHERE id = ?`, r.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("jobs/sqlite dead-letter %s: %w", r.ID, err)
	}
	return nil
}

// statsSQL counts one queue's messages per kind. A message is in flight
// when it was received and is invisible, unless Retry set that timeout.
// It visits every row of the queue; the reader pool runs it.
const statsSQL = `SELECT substr(g.queue, ?1), count(*),
	coalesce(sum(g.received > 0 AND g.timeout > ?2 AND (e.retry_at IS NULL OR e.retry_at <> g.timeout)), 0),
	min(g.created)
FROM goqite g LEFT JOIN jobs_errors e ON e.id = g.id
WHERE g.queue >= ?3 AND g.queue < ?4
GROUP BY g.queue`

// Stats counts messages per kind on the reader pool.
func (q *Queue) Stats(ctx context.Context) (jobs.Stats, error) {
	now := time.Now()
	// Every queue name starting with "jobs:" sorts in ["jobs:", "jobs;").
	end := queueName + ";"
	st := jobs.Stats{Kinds: map[string]jobs.KindStats{}}
	rows, err := q.reader.QueryContext(ctx, statsSQL, len(queuePrefix)+1, format(now), queuePrefix, end)
	if err != nil {
		return jobs.Stats{}, fmt.Errorf("jobs/sqlite stats: %w", err)
	}
	err = goqitesql.Each(rows, func(r *sql.Rows) error {
		var kind, oldest string
		var total, inFlight int
		if err := r.Scan(&kind, &total, &inFlight, &oldest); err != nil {
			return err
		}
		created, err := parse(oldest)
		if err != nil {
			return err
		}
		goqitesql.AddKind(st, now, kind, total, inFlight, created)
		return nil
	})
	if err != nil {
		return jobs.Stats{}, fmt.Errorf("jobs/sqlite stats: %w", err)
	}
	rows, err = q.reader.QueryContext(ctx, `SELECT kind, count(*) FROM jobs_dead WHERE queue = ? GROUP BY kind`, queueName)
	if err != nil {
		return jobs.Stats{}, fmt.Errorf("jobs/sqlite stats: %w", err)
	}
	if err := goqitesql.CountDead(rows, st); err != nil {
		return jobs.Stats{}, fmt.Errorf("jobs/sqlite stats: %w", err)
	}
	return st, nil
}

// deadWhere is the WHERE clause of jobs_dead rows f matches, and its
// arguments.
func deadWhere(f jobs.DeadFilter) (string, []any, error) {
	where, args := `queue = ?`, []any{queueName}
	if len(f.IDs) > 0 {
		list, err := json.Marshal(f.IDs)
		if err != nil {
			return "", nil, err
		}
		where += ` AND id IN (SELECT value FROM json_each(?))`
		args = append(args, string(list))
	}
	if f.Kind != "" {
		where += ` AND kind = ?`
		args = append(args, f.Kind)
	}
	if f.Error != "" {
		where += ` AND instr(last_error, ?) > 0`
		args = append(args, f.Error)
	}
	return where, args, nil
}

// Dead lists the dead messages f matches, newest first. A body that
// does not decode is listed with its kind and no payload.
func (q *Queue) Dead(ctx context.Context, f jobs.DeadFilter, limit int) ([]jobs.DeadMessage, error) {
	where, args, err := deadWhere(f)
	if err != nil {
		return nil, fmt.Errorf("jobs/sqlite dead: %w", err)
	}
	rows, err := q.reader.QueryContext(ctx, `SELECT id, kind, body, last_error, attempts, died_at FROM jobs_dead
WHERE `+where+` ORDER BY died_at DESC, rowid DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("jobs/sqlite dead: %w", err)
	}
	out := []jobs.DeadMessage{}
	err = goqitesql.Each(rows, func(r *sql.Rows) error {
		var id, kind, lastErr, diedAt string
		var body []byte
		var attempts int
		if err := r.Scan(&id, &kind, &body, &lastErr, &attempts, &diedAt); err != nil {
			return err
		}
		died, err := parse(diedAt)
		if err != nil {
			return err
		}
		out = append(out, goqitesql.DeadMessage(id, kind, body, attempts, lastErr, died))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jobs/sqlite dead: %w", err)
	}
	return out, nil
}

// Redrive moves the dead messages f matches back into their goqite
// queues under new ids, visible now and with received = 0, behind the
// messages already waiting.
func (q *Queue) Redrive(ctx context.Context, f jobs.DeadFilter) (int, error) {
	where, args, err := deadWhere(f)
	if err != nil {
		return 0, fmt.Errorf("jobs/sqlite redrive: %w", err)
	}
	var n int64
	err = q.RunTx(ctx, "jobs_redrive", func(tx *sql.Tx) error {
		var last int64 // the rows inserted below come after it
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(rowid), 0) FROM goqite`).Scan(&last); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO goqite (queue, body, priority)
SELECT ? || kind, body, priority FROM jobs_dead WHERE `+where+` ORDER BY created`, append([]any{queuePrefix}, args...)...)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		// At the front, once: TurnSchema's trigger gave them the current turn.
		if _, err := tx.ExecContext(ctx, `UPDATE goqite SET fair_rank = 0 WHERE rowid > ? AND fair_rank <> 0`, last); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM jobs_dead WHERE `+where, args...)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("jobs/sqlite redrive: %w", err)
	}
	return int(n), nil
}

// PruneDead deletes up to limit dead messages that died before before,
// oldest first, along jobs_dead's (queue, died_at) index.
func (q *Queue) PruneDead(ctx context.Context, before time.Time, limit int) (int, error) {
	res, err := q.writer.ExecContext(ctx, `DELETE FROM jobs_dead WHERE rowid IN (
	SELECT rowid FROM jobs_dead WHERE queue = ? AND died_at < ? ORDER BY died_at LIMIT ?)`, queueName, format(before), limit)
	n, err := goqitesql.Affected(res, err)
	if err != nil {
		return 0, fmt.Errorf("jobs/sqlite prune dead: %w", err)
	}
	return n, nil
}

// PruneDeadBeyond deletes up to limit of the oldest dead messages beyond
// the newest keep, along jobs_dead's (queue, died_at) index, in one
// statement: counting the queue's dead letters (the index, no rows read)
// and deleting a batch hold the writer for milliseconds, not for the
// whole excess.
func (q *Queue) PruneDeadBeyond(ctx context.Context, keep, limit int) (int, error) {
	res, err := q.writer.ExecContext(ctx, `DELETE FROM jobs_dead WHERE rowid IN (
	SELECT rowid FROM jobs_dead WHERE queue = ?1 ORDER BY died_at, rowid
	LIMIT min(?3, max(0, (SELECT count(*) FROM jobs_dead WHERE queue = ?1) - ?2)))`, queueName, keep, limit)
	n, err := goqitesql.Affected(res, err)
	if err != nil {
		return 0, fmt.Errorf("jobs/sqlite prune dead beyond %d: %w", keep, err)
	}
	return n, nil
}

// prepared returns query prepared on the writer; database/sql prepares
// it again by itself on a new connection. Preparing is most of the cost
// of a small statement here (goqite's triggers are compiled with it), so
// the hot ones — Receive, Ack, Extend — are prepared once. Not for use
// inside a transaction: preparing needs the writer's one connection.
func (q *Queue) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if st, ok := q.stmts[query]; ok {
		return st, nil
	}
	st, err := q.writer.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	q.stmts[query] = st
	return st, nil
}

// AckInterval is the Runner's default gathering of acks (jobs.AckPacer):
// 1 ms when the queue's statements share the store's COMMITs
// (Options.Exec), where an Ack costs a DELETE and no COMMIT of its own,
// and each acked message is one fewer that every Receive passes over;
// 0, the Runner's default, otherwise. With 1 ms against 5 ms, bench/queue's
// stream ran at 2.27x and 2.56x of goqite's loop against 2.15x and 2.03x
// (alternated, -n 10000 -runs 3).
func (q *Queue) AckInterval() time.Duration {
	if q.execFn != nil {
		return time.Millisecond
	}
	return 0
}

var _ jobs.AckPacer = (*Queue)(nil)

// Writer is where a single statement of the queue runs: a transaction
// of the store's, or the writer's pool (Options.Exec).
type Writer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// write runs fn, named name, with Options.Exec, or else on the writer's
// pool, each statement prepared once by the queue.
func (q *Queue) write(ctx context.Context, name string, fn func(w Writer) error) error {
	if q.execFn != nil {
		return q.execFn(ctx, name, fn)
	}
	return fn(preparedWriter{q})
}

// preparedWriter runs statements on the writer's pool, each prepared
// once by the queue; QueryRowContext, the rare lookup after a statement
// matched no row, runs unprepared (a *sql.Row cannot carry a prepare's
// error).
type preparedWriter struct{ q *Queue }

func (p preparedWriter) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := p.q.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (p preparedWriter) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.q.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (p preparedWriter) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return p.q.writer.QueryRowContext(ctx, query, args...)
}
