package postgres_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"maragu.dev/goqite"

	"onebox/internal/pgtest"
	"onebox/jobs"
	"onebox/jobs/jobstest"
	jobpg "onebox/jobs/postgres"
)

func TestQueue(t *testing.T) {
	t.Parallel()
	jobstest.Run(t, func(t *testing.T) jobs.Queue { return newQueue(t).queue })
}

type bundle struct {
	queue *jobpg.Queue
	db    *sql.DB
}

// newQueue opens database/sql over a pgx pool in a schema of the test's
// own, as store/postgres does, and runs Schema there. params are
// settings for its connections.
func newQueue(tb testing.TB, params ...string) bundle {
	tb.Helper()
	settings := map[string]string{}
	for i := 0; i+1 < len(params); i += 2 {
		settings[params[i]] = params[i+1]
	}
	cfg, err := pgxpool.ParseConfig(pgtest.WithParams(tb, pgtest.Schema(tb, "queue"), settings))
	if err != nil {
		tb.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	db := stdlib.OpenDBFromPool(pool)
	tb.Cleanup(func() {
		_ = db.Close()
		pool.Close()
	})
	if _, err := db.ExecContext(context.Background(), jobpg.Schema+";"+jobpg.FairSchema); err != nil {
		tb.Fatalf("schema: %v", err)
	}
	return bundle{queue: jobpg.New(db, jobpg.Options{}), db: db}
}

// TestConcurrentReceiversTakeDisjointBatches: receivers draining one
// backlog at once never get the same message, and between them get all
// of it. goqite's own PostgreSQL Receive, or this Receive without
// SKIP LOCKED, hands the same message to two of them (READ COMMITTED) or
// fails to serialize (SERIALIZABLE).
func TestConcurrentReceiversTakeDisjointBatches(t *testing.T) {
	t.Parallel()
	b := newQueue(t)
	ctx := t.Context()
	const n, receivers, batch = 2000, 4, 5
	preload(t, b, "k", n)

	var mu sync.Mutex
	got := map[string]int{} // receive count by id
	var wg sync.WaitGroup
	errs := make(chan error, receivers)
	for range receivers {
		wg.Go(func() {
			for {
				msgs, err := b.queue.Receive(ctx, "k", batch, time.Hour)
				if err != nil {
					errs <- err
					return
				}
				if len(msgs) == 0 {
					return
				}
				mu.Lock()
				for _, m := range msgs {
					got[m.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Receive: %v", err)
	}
	var twice []string
	for id, c := range got {
		if c > 1 {
			twice = append(twice, fmt.Sprintf("%s %d times", id, c))
		}
	}
	if len(twice) > 0 {
		t.Errorf("%d messages received more than once, e.g. %s", len(twice), twice[0])
	}
	if len(got) != n {
		t.Errorf("received %d distinct messages, want %d", len(got), n)
	}
}

// TestReceiveSkipsLockedRows: a message another transaction holds locked
// (another receiver picking its batch) is passed over, and Receive
// returns the rest without waiting for that transaction to end.
func TestReceiveSkipsLockedRows(t *testing.T) {
	t.Parallel()
	b := newQueue(t)
	ctx := t.Context()
	for i := range 3 {
		if err := b.queue.Send(ctx, jobs.Message{Kind: "k", Payload: json.RawMessage(fmt.Sprint(i))}, jobs.SendOptions{Priority: 3 - i}); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	var locked string
	if err := tx.QueryRowContext(ctx, `select id from goqite order by priority desc limit 1 for update`).Scan(&locked); err != nil {
		t.Fatal(err)
	}

	type result struct {
		msgs []jobs.Message
		err  error
	}
	done := make(chan result, 1)
	go func() {
		msgs, err := b.queue.Receive(ctx, "k", 10, time.Minute)
		done <- result{msgs, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		// Receive is waiting for the lock: end the transaction so it
		// returns, and fail below on what it took.
		t.Errorf("Receive waited 15s for a locked row")
		_ = tx.Rollback()
		r = <-done
	}
	if r.err != nil {
		t.Fatalf("Receive: %v", r.err)
	}
	var got []string
	for _, m := range r.msgs {
		if m.ID == locked {
			t.Errorf("Receive took the locked message %s", locked)
		}
		got = append(got, string(m.Payload))
	}
	if want := "[1 2]"; fmt.Sprint(got) != want {
		t.Errorf("Receive = %v, want %s: the unlocked messages, in order", got, want)
	}
}

// TestGoqiteReceivesOneboxJobs: what Send and SendTx enqueue is a goqite
// message that goqite's own Receive reads: in the queue "jobs:<kind>",
// with onebox's envelope as its body, higher priority first, a delayed
// one not before its time.
func TestGoqiteReceivesOneboxJobs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		send func(t *testing.T, b bundle, m jobs.Message, o jobs.SendOptions)
	}{
		{"Send", func(t *testing.T, b bundle, m jobs.Message, o jobs.SendOptions) {
			if err := b.queue.Send(t.Context(), m, o); err != nil {
				t.Fatalf("Send: %v", err)
			}
		}},
		{"SendTx", func(t *testing.T, b bundle, m jobs.Message, o jobs.SendOptions) {
			tx, err := b.db.BeginTx(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.queue.SendTx(t.Context(), tx, m, o); err != nil {
				t.Fatalf("SendTx: %v", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newQueue(t)
			low := jobs.Message{Kind: "k", Payload: json.RawMessage(`{"n":1}`), RequestID: "req-low"}
			high := jobs.Message{Kind: "k", Payload: json.RawMessage(`{"n":2}`), RequestID: "req-high",
				TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
			later := jobs.Message{Kind: "k", Payload: json.RawMessage(`{"n":3}`), RequestID: "req-later"}
			tt.send(t, b, low, jobs.SendOptions{})
			tt.send(t, b, high, jobs.SendOptions{Priority: 5})
			tt.send(t, b, later, jobs.SendOptions{Delay: time.Hour})

			g := goqite.New(goqite.NewOpts{DB: b.db, Name: "jobs:k", SQLFlavor: goqite.SQLFlavorPostgreSQL, Timeout: time.Minute})
			for _, want := range []jobs.Message{high, low} {
				gm, err := g.Receive(t.Context())
				if err != nil || gm == nil {
					t.Fatalf("goqite Receive = %v, %v; want %s", gm, err, want.RequestID)
				}
				got, err := jobs.Decode(gm.Body)
				if err != nil {
					t.Fatalf("goqite body %q: %v", gm.Body, err)
				}
				if diff := sameMessage(got, want); diff != "" {
					t.Errorf("goqite received %s", diff)
				}
			}
			if gm, err := g.Receive(t.Context()); err != nil || gm != nil {
				t.Errorf("goqite Receive before the delay = %+v, %v; want nothing", gm, err)
			}
		})
	}
}

// TestReceivesGoqiteMessages: a message sent with goqite's own Send,
// with onebox's envelope as its body, is received here, higher priority
// first, with its attempt counted, a delayed one not before its time;
// Stats counts it under its kind; and Ack deletes it for goqite too.
func TestReceivesGoqiteMessages(t *testing.T) {
	t.Parallel()
	b := newQueue(t)
	ctx := t.Context()
	g := goqite.New(goqite.NewOpts{DB: b.db, Name: "jobs:k", SQLFlavor: goqite.SQLFlavorPostgreSQL})
	low := jobs.Message{Kind: "k", Payload: json.RawMessage(`[1]`), RequestID: "req-low"}
	high := jobs.Message{Kind: "k", Payload: json.RawMessage(`[2]`), RequestID: "req-high",
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	later := jobs.Message{Kind: "k", Payload: json.RawMessage(`[3]`), RequestID: "req-later"}
	for _, s := range []struct {
		m jobs.Message
		o goqite.Message
	}{{low, goqite.Message{}}, {high, goqite.Message{Priority: 1}}, {later, goqite.Message{Delay: time.Hour}}} {
		body, err := jobs.Encode(s.m)
		if err != nil {
			t.Fatal(err)
		}
		s.o.Body = body
		if err := g.Send(ctx, s.o); err != nil {
			t.Fatalf("goqite Send: %v", err)
		}
	}
	// A goqite queue of someone else's in the same table is not a kind.
	other := goqite.New(goqite.NewOpts{DB: b.db, Name: "other", SQLFlavor: goqite.SQLFlavorPostgreSQL})
	if err := other.Send(ctx, goqite.Message{Body: []byte("theirs")}); err != nil {
		t.Fatalf("goqite Send: %v", err)
	}
	st, err := b.queue.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if ks, ok := st.Kinds["k"]; len(st.Kinds) != 1 || !ok || ks.Queued != 3 {
		t.Errorf("Stats = %+v, want kind k only, 3 queued", st.Kinds)
	}
	msgs, err := b.queue.Receive(ctx, "k", 10, time.Minute)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if len(msgs) != 2 {
		t.Fatalf("Receive = %+v, want the 2 visible messages", msgs)
	}
	for i, want := range []jobs.Message{high, low} {
		if diff := sameMessage(msgs[i], want); diff != "" || msgs[i].Attempt != 1 {
			t.Errorf("message %d: %s, attempt %d, want 1", i, diff, msgs[i].Attempt)
		}
	}
	if err := b.queue.Ack(ctx, msgs[0].Receipt(), msgs[1].Receipt()); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	var left int
	if err := b.db.QueryRowContext(ctx, `select count(*) from goqite where queue = 'jobs:k'`).Scan(&left); err != nil || left != 1 {
		t.Errorf("goqite rows after Ack: %d (%v), want 1, the delayed one", left, err)
	}
}

// sameMessage reports how got differs from want in what the sender
// chose, or "".
func sameMessage(got, want jobs.Message) string {
	if got.Kind != want.Kind || string(got.Payload) != string(want.Payload) ||
		got.RequestID != want.RequestID || got.TraceParent != want.TraceParent {
		return fmt.Sprintf("%+v, want %+v", got, want)
	}
	return ""
}

func TestSendTx(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		commit bool
	}{
		{"rolled back", false},
		{"committed", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newQueue(t)
			ctx := t.Context()
			tx, err := b.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The business write and its job, in one transaction.
			if _, err := tx.ExecContext(ctx, `create table photos (id text primary key)`); err != nil {
				t.Fatal(err)
			}
			m := jobs.Message{Kind: "photo.process", Payload: json.RawMessage(`{"photo":"p1"}`), RequestID: "req-1"}
			if err := b.queue.SendTx(ctx, tx, m, jobs.SendOptions{Priority: 1}); err != nil {
				t.Fatalf("SendTx: %v", err)
			}
			if tt.commit {
				err = tx.Commit()
			} else {
				err = tx.Rollback()
			}
			if err != nil {
				t.Fatal(err)
			}
			var rows int
			if err := b.db.QueryRowContext(ctx, `select count(*) from goqite`).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{false: 0, true: 1}[tt.commit]; rows != want {
				t.Fatalf("%d goqite rows, want %d", rows, want)
			}
			msgs, err := b.queue.Receive(ctx, m.Kind, 10, time.Minute)
			if err != nil {
				t.Fatalf("Receive: %v", err)
			}
			if len(msgs) != rows {
				t.Fatalf("Receive = %d messages, want %d", len(msgs), rows)
			}
			if tt.commit && sameMessage(msgs[0], m) != "" {
				t.Errorf("received %s", sameMessage(msgs[0], m))
			}
		})
	}
}

func TestSendTxMalformed(t *testing.T) {
	t.Parallel()
	b := newQueue(t)
	tx, err := b.db.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := b.queue.SendTx(t.Context(), tx, jobs.Message{}, jobs.SendOptions{}); !errors.Is(err, jobs.ErrMalformed) {
		t.Errorf("SendTx(no kind) = %v, want ErrMalformed", err)
	}
}

func TestSchemaIdempotent(t *testing.T) {
	t.Parallel()
	b := newQueue(t)
	if err := b.queue.Send(t.Context(), jobs.Message{Kind: "k"}, jobs.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.ExecContext(t.Context(), jobpg.Schema+";"+jobpg.FairSchema); err != nil {
		t.Fatalf("Schema again: %v", err)
	}
	if msgs, err := b.queue.Receive(t.Context(), "k", 10, time.Minute); err != nil || len(msgs) != 1 {
		t.Errorf("after Schema again: Receive = %d messages, %v; want the 1 sent", len(msgs), err)
	}
}

// TestSchemaIsGoqites: Schema holds goqite's own schema_postgres.sql,
// made idempotent and otherwise unchanged, so goqite's operations work
// on it; only pgcrypto is left to the database's owner. goqite does not
// export its schema; the test reads it from the module goqite is built
// from, so an upgrade that changes it fails here.
func TestSchemaIsGoqites(t *testing.T) {
	t.Parallel()
	out, err := exec.CommandContext(t.Context(), "go", "list", "-m", "-f", "{{.Dir}}", "maragu.dev/goqite").Output()
	if err != nil {
		t.Fatalf("go list maragu.dev/goqite: %v", err)
	}
	theirs, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "schema_postgres.sql"))
	if err != nil {
		t.Fatal(err)
	}
	want := normalize(strings.Replace(string(theirs), "create extension if not exists pgcrypto;", "", 1))
	ours := normalize(jobpg.Schema)
	for _, idempotent := range []string{" or replace", " if not exists", "drop trigger if exists goqite_updated_timestamp on goqite;"} {
		ours = strings.ReplaceAll(ours, idempotent, "")
	}
	ours = strings.Join(strings.Fields(ours), " ")
	if want == "" || !strings.Contains(ours, want) {
		t.Errorf("Schema does not hold goqite's schema_postgres.sql:\n%s\nSchema made plain:\n%s", want, ours)
	}
}

// normalize drops SQL comments and folds runs of white space.
func normalize(schema string) string {
	var lines []string
	for l := range strings.Lines(schema) {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	return strings.Join(strings.Fields(strings.Join(lines, " ")), " ")
}

// preload enqueues n messages of kind, many per transaction.
func preload(tb testing.TB, b bundle, kind string, n int) {
	tb.Helper()
	ctx := context.Background()
	for n > 0 {
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			tb.Fatal(err)
		}
		for range min(n, 1000) {
			if err := b.queue.SendTx(ctx, tx, jobs.Message{Kind: kind, Payload: json.RawMessage(`{}`)}, jobs.SendOptions{}); err != nil {
				tb.Fatal(err)
			}
			n--
		}
		if err := tx.Commit(); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestReceiveOrdersABatch: a batch comes back higher priority first,
// then oldest first, whatever order the update visited its rows in.
// RETURNING promises none; the planner's usual join returns the batch in
// order, a merge join (forced here) in id order, which is random.
func TestReceiveOrdersABatch(t *testing.T) {
	t.Parallel()
	b := newQueue(t, "enable_hashjoin", "off", "enable_nestloop", "off")
	ctx := t.Context()
	const n = 300
	for i := range n {
		if err := b.queue.Send(ctx, jobs.Message{Kind: "k", Payload: json.RawMessage(fmt.Sprint(i))}, jobs.SendOptions{Priority: i / 2}); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := b.queue.Receive(ctx, "k", n, time.Minute)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if len(msgs) != n {
		t.Fatalf("Receive = %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		// Priorities n/2-1 down to 0, two messages each, the older first.
		if want := fmt.Sprint(n - 2 - i/2*2 + i%2); string(m.Payload) != want {
			t.Fatalf("message %d is %s, want %s", i, m.Payload, want)
		}
	}
}
