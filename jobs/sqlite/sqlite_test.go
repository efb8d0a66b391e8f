package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maragu.dev/goqite"
	_ "modernc.org/sqlite"

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
// pragmas, one writer connection, a query-only reader pool) and runs
// Schema on it.
func newQueue(tb testing.TB) bundle {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "jobs.db")
	writer := mustOpen(tb, path, "_txlock=immediate")
	writer.SetMaxOpenConns(1)
	if _, err := writer.Exec(sqlite.Schema); err != nil {
		tb.Fatalf("schema: %v", err)
	}
	reader := mustOpen(tb, path, "_pragma=query_only(1)")
	return bundle{queue: sqlite.New(writer, reader, sqlite.Options{}), writer: writer}
}

func mustOpen(tb testing.TB, path, extra string) *sql.DB {
	tb.Helper()
	params := []string{
		"_pragma=busy_timeout(5000)",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(NORMAL)",
		"_pragma=foreign_keys(1)",
		extra,
	}
	db, err := sql.Open("sqlite", path+"?"+strings.Join(params, "&"))
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	if err := db.PingContext(context.Background()); err != nil {
		tb.Fatalf("ping: %v", err)
	}
	return db
}

// TestGoqiteCompatible: SendTx writes what goqite writes; a message sent
// with goqite's own SendTx is received like any other.
func TestGoqiteCompatible(t *testing.T) {
	t.Parallel()
	b := newQueue(t)
	ctx := t.Context()
	m := jobs.Message{Kind: "k", Payload: json.RawMessage(`[1]`), RequestID: "req-1"}
	body, err := jobs.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	g := goqite.New(goqite.NewOpts{DB: b.writer, Name: "jobs:k"})
	tx, err := b.writer.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SendTx(ctx, tx, goqite.Message{Body: body, Priority: 1}); err != nil {
		t.Fatalf("goqite SendTx: %v", err)
	}
	if err := sqlite.SendTx(ctx, tx, m, jobs.SendOptions{}); err != nil {
		t.Fatalf("SendTx: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	msgs, err := b.queue.Receive(ctx, "k", 10, time.Minute)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("Receive = %d messages, %v; want 2", len(msgs), err)
	}
	for _, got := range msgs {
		if got.RequestID != m.RequestID || string(got.Payload) != string(m.Payload) || got.Attempt != 1 {
			t.Errorf("received %+v, want %+v at attempt 1", got, m)
		}
	}
	// goqite's own columns, as its Receive reads them.
	var received int
	var timeout string
	if err := b.writer.QueryRowContext(ctx, `SELECT received, timeout FROM goqite WHERE id = ?`, msgs[0].ID).Scan(&received, &timeout); err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", timeout); err != nil || received != 1 {
		t.Errorf("goqite row: received %d, timeout %q (%v)", received, timeout, err)
	}
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
			if err := sqlite.SendTx(ctx, tx, m, jobs.SendOptions{Priority: 1}); err != nil {
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
	if err := sqlite.SendTx(t.Context(), tx, jobs.Message{}, jobs.SendOptions{}); !errors.Is(err, jobs.ErrMalformed) {
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

// BenchmarkReceiveAck takes batches from a preloaded queue and acks each
// batch in one statement, as the Runner does.
func BenchmarkReceiveAck(b *testing.B) {
	for _, batch := range []int{1, 10, 100} {
		b.Run(fmt.Sprint("batch=", batch), func(b *testing.B) {
			q := newQueue(b)
			preload(b, q, b.N*batch)
			ctx := context.Background()
			ids := make([]string, 0, batch)
			b.ResetTimer()
			for range b.N {
				msgs, err := q.queue.Receive(ctx, "k", batch, time.Minute)
				if err != nil || len(msgs) != batch {
					b.Fatalf("Receive = %d, %v; want %d", len(msgs), err, batch)
				}
				ids = ids[:0]
				for _, m := range msgs {
					ids = append(ids, m.ID)
				}
				if err := q.queue.Ack(ctx, ids...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}

// BenchmarkSend is the producer's cost: one message, one transaction.
func BenchmarkSend(b *testing.B) {
	q := newQueue(b)
	ctx := context.Background()
	m := jobs.Message{Kind: "k", Payload: json.RawMessage(`{"photo":"0193f0e4-7b5c-7d4e-9a1b-2c3d4e5f6a7b"}`), RequestID: "req-1"}
	for b.Loop() {
		if err := q.queue.Send(ctx, m, jobs.SendOptions{}); err != nil {
			b.Fatal(err)
		}
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
			if err := sqlite.SendTx(ctx, tx, jobs.Message{Kind: "k", Payload: json.RawMessage(`{}`)}, jobs.SendOptions{}); err != nil {
				tb.Fatal(err)
			}
			n--
		}
		if err := tx.Commit(); err != nil {
			tb.Fatal(err)
		}
	}
}
