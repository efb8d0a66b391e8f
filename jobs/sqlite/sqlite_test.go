package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"maragu.dev/goqite"
	moderncsqlite "modernc.org/sqlite"

	"onebox/internal/stmtcache"
	"onebox/jobs"
	"onebox/jobs/jobstest"
	"onebox/jobs/sqlite"
)

func TestQueue(t *testing.T) {
	t.Parallel()
	jobstest.Run(t, func(t *testing.T) jobs.Queue { return newQueue(t).queue })
}

type bundle struct {
	queue  *sqlite.Queue
	writer *sql.DB
}

// newQueue opens a fresh database the way store/sqlite does (the same
// pragmas, one writer connection keeping its statements compiled, a
// query-only reader pool) and runs Schema on it.
func newQueue(tb testing.TB) bundle {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "jobs.db")
	writer := sql.OpenDB(stmtcache.New(&moderncsqlite.Driver{}, dsn(path, "_txlock=immediate"), 256))
	tb.Cleanup(func() { _ = writer.Close() })
	writer.SetMaxOpenConns(1)
	if _, err := writer.Exec(sqlite.Schema + ";" + sqlite.FairSchema + ";" + sqlite.RankedSchema + ";" + sqlite.TurnSchema); err != nil {
		tb.Fatalf("schema: %v", err)
	}
	reader := mustOpen(tb, path, "_pragma=query_only(1)")
	return bundle{queue: sqlite.New(writer, reader, sqlite.Options{}), writer: writer}
}

// dsn is path with the store's pragmas and extra.
func dsn(path, extra string) string {
	return path + "?" + strings.Join([]string{
		"_pragma=busy_timeout(5000)",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(NORMAL)",
		"_pragma=foreign_keys(1)",
		extra,
	}, "&")
}

func mustOpen(tb testing.TB, path, extra string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", dsn(path, extra))
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	if err := db.PingContext(context.Background()); err != nil {
		tb.Fatalf("ping: %v", err)
	}
	return db
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
			tx, err := b.writer.BeginTx(t.Context(), nil)
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

			g := goqite.New(goqite.NewOpts{DB: b.writer, Name: "jobs:k", SQLFlavor: goqite.SQLFlavorSQLite, Timeout: time.Minute})
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

// TestRunnerRunsGoqiteMessages: a message sent with goqite's own Send,
// with onebox's envelope as its body, is received, run and acked by the
// Runner on this Queue, higher priority first.
func TestRunnerRunsGoqiteMessages(t *testing.T) {
	t.Parallel()
	b := newQueue(t)
	ctx := t.Context()
	g := goqite.New(goqite.NewOpts{DB: b.writer, Name: "jobs:k", SQLFlavor: goqite.SQLFlavorSQLite})
	low := jobs.Message{Kind: "k", Payload: json.RawMessage(`[1]`), RequestID: "req-low"}
	high := jobs.Message{Kind: "k", Payload: json.RawMessage(`[2]`), RequestID: "req-high",
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	for _, s := range []struct {
		m        jobs.Message
		priority int
	}{{low, 0}, {high, 1}} {
		body, err := jobs.Encode(s.m)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Send(ctx, goqite.Message{Body: body, Priority: s.priority}); err != nil {
			t.Fatalf("goqite Send: %v", err)
		}
	}

	ran := make(chan jobs.Message, 2)
	r := jobs.NewRunner(b.queue, jobs.RunnerOptions{PollInterval: 10 * time.Millisecond, MaxPollInterval: 50 * time.Millisecond})
	// One worker: the order it runs them in is the order received.
	r.Register("k", func(_ context.Context, m jobs.Message) error { ran <- m; return nil }, jobs.KindOptions{Concurrency: 1})
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	for _, want := range []jobs.Message{high, low} {
		select {
		case got := <-ran:
			if diff := sameMessage(got, want); diff != "" || got.Attempt != 1 {
				t.Errorf("Runner ran %+v: %s, attempt %d, want 1", got, diff, got.Attempt)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("waited 10s for the Runner to run %s", want.RequestID)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Acks are flushed by the time Run returns.
	var left int
	if err := b.writer.QueryRowContext(ctx, `SELECT count(*) FROM goqite`).Scan(&left); err != nil || left != 0 {
		t.Errorf("goqite rows after Run: %d (%v), want 0: not acked", left, err)
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

// TestSchemaIsGoqites: Schema holds goqite's own schema_sqlite.sql, each
// statement made idempotent and otherwise unchanged, so goqite's
// operations work on it. goqite does not export its schema; the test
// reads it from the module goqite is built from, so an upgrade that
// changes it fails here.
func TestSchemaIsGoqites(t *testing.T) {
	t.Parallel()
	out, err := exec.CommandContext(t.Context(), "go", "list", "-m", "-f", "{{.Dir}}", "maragu.dev/goqite").Output()
	if err != nil {
		t.Fatalf("go list maragu.dev/goqite: %v", err)
	}
	theirs, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "schema_sqlite.sql"))
	if err != nil {
		t.Fatal(err)
	}
	ours := normalize(strings.ReplaceAll(sqlite.Schema, " if not exists", ""))
	if want := normalize(string(theirs)); want == "" || !strings.Contains(ours, want) {
		t.Errorf("Schema does not hold goqite's schema_sqlite.sql:\n%s\nSchema without \"if not exists\":\n%s", want, ours)
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
			tx, err := b.writer.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The business write and its job, in one transaction.
			if _, err := tx.ExecContext(ctx, `CREATE TABLE photos (id TEXT PRIMARY KEY)`); err != nil {
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
			msgs, err := b.queue.Receive(ctx, m.Kind, 10, time.Minute)
			if err != nil {
				t.Fatalf("Receive: %v", err)
			}
			if want := map[bool]int{false: 0, true: 1}[tt.commit]; len(msgs) != want {
				t.Fatalf("Receive = %d messages, want %d", len(msgs), want)
			}
			if tt.commit && (msgs[0].RequestID != m.RequestID || string(msgs[0].Payload) != string(m.Payload)) {
				t.Errorf("received %+v, want %+v", msgs[0], m)
			}
		})
	}
}

func TestSendTxMalformed(t *testing.T) {
	t.Parallel()
	b := newQueue(t)
	tx, err := b.writer.BeginTx(t.Context(), nil)
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
	if _, err := b.writer.Exec(sqlite.Schema); err != nil {
		t.Fatalf("Schema again: %v", err)
	}
	if msgs, err := b.queue.Receive(t.Context(), "k", 10, time.Minute); err != nil || len(msgs) != 1 {
		t.Errorf("after Schema again: Receive = %d messages, %v; want the 1 sent", len(msgs), err)
	}
}

// TestUpdatedTime: a message's updated time moves with each receive,
// extension and retry, which set it themselves since TurnSchema dropped
// goqite's trigger that rewrote the row for it.
func TestUpdatedTime(t *testing.T) {
	t.Parallel()
	b := newQueue(t)
	ctx := t.Context()
	if err := b.queue.Send(ctx, jobs.Message{Kind: "k"}, jobs.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	last := ""
	moved := func(step string) {
		t.Helper()
		var updated string
		if err := b.writer.QueryRow(`SELECT updated FROM goqite`).Scan(&updated); err != nil {
			t.Fatal(err)
		}
		if updated <= last {
			t.Errorf("after %s: updated %s, want later than %s", step, updated, last)
		}
		last = updated
		time.Sleep(5 * time.Millisecond) // the times have milliseconds
	}
	moved("Send")
	msgs, err := b.queue.Receive(ctx, "k", 1, time.Minute)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Receive = %v, %v", msgs, err)
	}
	moved("Receive")
	if err := b.queue.Extend(ctx, msgs[0].Receipt(), time.Minute); err != nil {
		t.Fatal(err)
	}
	moved("Extend")
	if err := b.queue.Retry(ctx, msgs[0].Receipt(), time.Now(), "failed"); err != nil {
		t.Fatal(err)
	}
	moved("Retry")
}

// BenchmarkReceiveAck: jobstest.BenchReceiveAck on SQLite.
func BenchmarkReceiveAck(b *testing.B) {
	jobstest.BenchReceiveAck(b, func(b *testing.B, n int) jobs.Queue {
		q := newQueue(b)
		preload(b, q, n)
		return q.queue
	})
}

// BenchmarkGoqiteReceiveDelete is BenchmarkReceiveAck's baseline: a
// preloaded queue of the same messages drained with goqite's own Receive
// and Delete, one message and two transactions at a time, as goqite's
// users run it: on goqite's schema alone (FairSchema replaces the index
// goqite's Receive orders by, without which it sorts the whole queue on
// every call) and a plain database/sql pool with the same pragmas.
func BenchmarkGoqiteReceiveDelete(b *testing.B) {
	writer := mustOpen(b, filepath.Join(b.TempDir(), "goqite.db"), "_txlock=immediate")
	writer.SetMaxOpenConns(1)
	if _, err := writer.Exec(sqlite.Schema); err != nil {
		b.Fatalf("schema: %v", err)
	}
	g := goqite.New(goqite.NewOpts{DB: writer, Name: "jobs:k", SQLFlavor: goqite.SQLFlavorSQLite, Timeout: time.Minute})
	ctx := context.Background()
	body, err := jobs.Encode(jobs.Message{Kind: "k", Payload: json.RawMessage(`{}`)})
	if err != nil {
		b.Fatal(err)
	}
	for n := b.N; n > 0; {
		tx, err := writer.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		for range min(n, 10000) {
			if err := g.SendTx(ctx, tx, goqite.Message{Body: body}); err != nil {
				b.Fatal(err)
			}
			n--
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		m, err := g.Receive(ctx)
		if err != nil || m == nil {
			b.Fatalf("goqite Receive = %v, %v", m, err)
		}
		if err := g.Delete(ctx, m.ID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkSend is the producer's cost: one message, one transaction;
// without a fair key, and with one of 100 keys, as photo jobs carry
// their owner's (the key's turn is one more lookup and index entry).
func BenchmarkSend(b *testing.B) {
	for _, keys := range []int{0, 100} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			q := newQueue(b)
			ctx := context.Background()
			m := jobs.Message{Kind: "k", Payload: json.RawMessage(`{"photo":"0193f0e4-7b5c-7d4e-9a1b-2c3d4e5f6a7b"}`), RequestID: "req-1"}
			i := 0
			for b.Loop() {
				if keys > 0 {
					m.FairKey = "owner-" + strconv.Itoa(i%keys)
				}
				i++
				if err := q.queue.Send(ctx, m, jobs.SendOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// preload enqueues n messages of kind "k", many per transaction.
func preload(tb testing.TB, b bundle, n int) {
	tb.Helper()
	ctx := context.Background()
	for n > 0 {
		tx, err := b.writer.BeginTx(ctx, nil)
		if err != nil {
			tb.Fatal(err)
		}
		for range min(n, 10000) {
			if err := b.queue.SendTx(ctx, tx, jobs.Message{Kind: "k", Payload: json.RawMessage(`{}`)}, jobs.SendOptions{}); err != nil {
				tb.Fatal(err)
			}
			n--
		}
		if err := tx.Commit(); err != nil {
			tb.Fatal(err)
		}
	}
}
