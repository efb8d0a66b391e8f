// Command queue measures onebox's job queue (jobs/sqlite and jobs.Runner)
// against a plain goqite loop, in one run, each scenario on a fresh
// database in a temporary directory, opened with the store's pragmas (WAL,
// synchronous=NORMAL, one writer connection with BEGIN IMMEDIATE, a
// query-only reader pool):
//
//   - goqite: goqite's own Send, Receive and Delete, one message at a
//     time, on goqite's own schema. The baseline.
//   - stream: -producers goroutines enqueue -n no-op jobs one per
//     transaction, calling Notify like a request handler would, while a
//     Runner (-concurrency workers) runs them. From the first enqueue to
//     the last ack.
//   - drain: -n jobs enqueued beforehand, then run by the Runner. From
//     Run to the last ack.
//
// It prints jobs/s and the ratio to the baseline, which is the number to
// watch: the machine's speed and load move all three.
//
//	go run ./bench/queue -n 20000
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"maragu.dev/goqite"
	_ "modernc.org/sqlite"

	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
)

// goqiteSchema is goqite v0.4.0's schema_sqlite.sql, unchanged, for the
// baseline: goqite as its users run it.
const goqiteSchema = `create table goqite (
  id text primary key default ('m_' || lower(hex(randomblob(16)))),
  created text not null default (strftime('%Y-%m-%dT%H:%M:%fZ')),
  updated text not null default (strftime('%Y-%m-%dT%H:%M:%fZ')),
  queue text not null,
  body blob not null,
  timeout text not null default (strftime('%Y-%m-%dT%H:%M:%fZ')),
  received integer not null default 0,
  priority integer not null default 0
) strict;

create trigger goqite_updated_timestamp after update on goqite begin
  update goqite set updated = strftime('%Y-%m-%dT%H:%M:%fZ') where id = old.id;
end;

create index goqite_queue_priority_created_idx on goqite (queue, priority desc, created);`

// noopJob is what every scenario enqueues: the shape of a photo job.
func noopJob() jobs.Message {
	return jobs.Message{
		Kind:      "noop",
		Payload:   json.RawMessage(`{"photo":"0193f0e4-7b5c-7d4e-9a1b-2c3d4e5f6a7b"}`),
		RequestID: "0193f0e4-7b5c-7d4e-9a1b-2c3d4e5f6a7c",
	}
}

func main() {
	n := flag.Int("n", 20000, "jobs per scenario")
	producers := flag.Int("producers", 4, "goroutines enqueueing in the stream scenario")
	concurrency := flag.Int("concurrency", 8, "Runner workers for the no-op kind")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "queue:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(context.Background(), *n, *producers, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, "queue:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(ctx context.Context, n, producers, concurrency int) error {
	dir, err := os.MkdirTemp("", "onebox-queue-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	load, _ := os.ReadFile("/proc/loadavg") // Linux only; empty elsewhere
	fmt.Printf("n=%d producers=%d concurrency=%d GOMAXPROCS=%d loadavg=%s\n",
		n, producers, concurrency, runtime.GOMAXPROCS(0), strings.TrimSpace(string(load)))

	base, err := goqiteLoop(ctx, filepath.Join(dir, "goqite.db"), n)
	if err != nil {
		return fmt.Errorf("goqite: %w", err)
	}
	stream, err := onebox(ctx, filepath.Join(dir, "stream.db"), n, producers, concurrency, false)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	drain, err := onebox(ctx, filepath.Join(dir, "drain.db"), n, producers, concurrency, true)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}

	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	fmt.Printf("%-8s %8s %9s %9s %9s\n", "scenario", "jobs", "seconds", "jobs/s", "ratio")
	for _, r := range []struct {
		name string
		d    time.Duration
	}{{"goqite", base}, {"stream", stream}, {"drain", drain}} {
		fmt.Printf("%-8s %8d %9.3f %9.0f %8.2fx\n", r.name, n, r.d.Seconds(), rate(r.d), rate(r.d)/rate(base))
	}
	return nil
}

// goqiteLoop is the baseline: Send, Receive, Delete, one message at a
// time, with goqite's API.
func goqiteLoop(ctx context.Context, path string, n int) (time.Duration, error) {
	writer, reader, err := open(path)
	if err != nil {
		return 0, err
	}
	defer closeAll(writer, reader)
	if _, err := writer.ExecContext(ctx, goqiteSchema); err != nil {
		return 0, err
	}
	q := goqite.New(goqite.NewOpts{DB: writer, Name: "jobs:noop", Timeout: 30 * time.Second})
	body, err := jobs.Encode(noopJob())
	if err != nil {
		return 0, err
	}
	start := time.Now()
	for range n {
		if err := q.Send(ctx, goqite.Message{Body: body}); err != nil {
			return 0, err
		}
		m, err := q.Receive(ctx)
		if err != nil {
			return 0, err
		}
		if m == nil {
			return 0, errors.New("received nothing")
		}
		if err := q.Delete(ctx, m.ID); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// onebox runs n no-op jobs through jobs/sqlite and the Runner: enqueued
// while the Runner runs (stream), or all beforehand (drain).
func onebox(ctx context.Context, path string, n, producers, concurrency int, prefill bool) (time.Duration, error) {
	writer, reader, err := open(path)
	if err != nil {
		return 0, err
	}
	defer closeAll(writer, reader)
	if _, err := writer.ExecContext(ctx, jobsqlite.Schema); err != nil {
		return 0, err
	}
	q := jobsqlite.New(writer, reader, jobsqlite.Options{})
	if prefill {
		if err := enqueueAll(ctx, writer, n); err != nil {
			return 0, err
		}
	}
	counted := &counter{Queue: q, want: int64(n), done: make(chan struct{})}
	r := jobs.NewRunner(counted, jobs.RunnerOptions{})
	job := noopJob()
	r.Register(job.Kind, func(context.Context, jobs.Message) error { return nil }, jobs.KindOptions{Concurrency: concurrency})

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	start := time.Now()
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(runCtx) }()

	sendErr := make(chan error, producers)
	if !prefill {
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for i := p; i < n; i += producers {
					if err := q.Send(ctx, job, jobs.SendOptions{}); err != nil {
						sendErr <- err
						return
					}
					r.Notify()
				}
			})
		}
		go func() { wg.Wait(); close(sendErr) }()
	}

	select {
	case <-counted.done:
	case err := <-sendErr:
		if err != nil {
			return 0, err
		}
		<-counted.done
	case err := <-runErr:
		return 0, fmt.Errorf("runner stopped: %v", err)
	case <-time.After(10 * time.Minute):
		return 0, errors.New("timed out")
	}
	elapsed := time.Since(start)
	stop()
	if err := <-runErr; err != nil {
		return 0, err
	}
	fmt.Printf("  %s: %d Receive calls (%.1f jobs each), %d Ack calls (%.1f jobs each)\n", filepath.Base(path),
		counted.receives.Load(), float64(n)/float64(counted.receives.Load()), counted.acks.Load(), float64(n)/float64(counted.acks.Load()))
	return elapsed, nil
}

// enqueueAll enqueues n jobs, 1000 per transaction.
func enqueueAll(ctx context.Context, writer *sql.DB, n int) error {
	for n > 0 {
		tx, err := writer.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for range min(n, 1000) {
			if err := jobsqlite.SendTx(ctx, tx, noopJob(), jobs.SendOptions{}); err != nil {
				_ = tx.Rollback()
				return err
			}
			n--
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// counter is the real queue, counting Receive and Ack calls and closing
// done once want messages are acked: the end of a scenario.
type counter struct {
	jobs.Queue
	want     int64
	receives atomic.Int64
	acks     atomic.Int64
	acked    atomic.Int64
	once     sync.Once
	done     chan struct{}
}

func (c *counter) Receive(ctx context.Context, kind string, max int, visibility time.Duration) ([]jobs.Message, error) {
	c.receives.Add(1)
	return c.Queue.Receive(ctx, kind, max, visibility)
}

func (c *counter) Ack(ctx context.Context, ids ...string) error {
	if err := c.Queue.Ack(ctx, ids...); err != nil {
		return err
	}
	c.acks.Add(1)
	if c.acked.Add(int64(len(ids))) >= c.want {
		c.once.Do(func() { close(c.done) })
	}
	return nil
}

// open opens path as store/sqlite does: the same pragmas, one writer
// connection taking the write lock at BEGIN, a query-only reader pool.
func open(path string) (writer, reader *sql.DB, err error) {
	dsn := func(extra string) string {
		return path + "?" + strings.Join([]string{
			"_pragma=busy_timeout(5000)",
			"_pragma=journal_mode(WAL)",
			"_pragma=synchronous(NORMAL)",
			"_pragma=foreign_keys(1)",
			extra,
		}, "&")
	}
	if writer, err = sql.Open("sqlite", dsn("_txlock=immediate")); err != nil {
		return nil, nil, err
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	// The writer first, so the file is in WAL mode before a reader opens.
	if err := writer.Ping(); err != nil {
		return nil, nil, errors.Join(err, writer.Close())
	}
	if reader, err = sql.Open("sqlite", dsn("_pragma=query_only(1)")); err != nil {
		return nil, nil, errors.Join(err, writer.Close())
	}
	reader.SetMaxOpenConns(runtime.NumCPU())
	reader.SetMaxIdleConns(runtime.NumCPU())
	return writer, reader, nil
}

func closeAll(writer, reader *sql.DB) {
	_ = reader.Close()
	_ = writer.Close()
}
