// Command queue measures onebox's job queue (jobs/sqlite, with -postgres
// also jobs/postgres, and jobs.Runner) against goqite used directly, like
// with like, each measurement on a fresh database in a temporary
// directory. onebox's SQLite database is opened by store/sqlite itself,
// as onebox opens it (its pragmas, its checkpointer, its writer lock and
// group commit), and its queue is the store's (Store.Queue); goqite's
// gets the same pragmas (WAL, synchronous=NORMAL, one writer connection
// with BEGIN IMMEDIATE, a query-only reader pool) on a plain database/sql
// pool, as goqite's users would open it. Two pairs, each a goqite
// baseline and the onebox scenario that does the same work:
//
//   - goqite-drain: -n messages enqueued beforehand (not timed), then
//     goqite's own Receive and Delete, one message at a time, until the
//     queue is empty. Timed: the drain only.
//   - drain: -n jobs enqueued beforehand (not timed), then run by the
//     Runner (-concurrency workers, a no-op handler). Timed: from Run to
//     the last ack. Compared with goqite-drain.
//   - goqite-send: goqite's Send, Receive and Delete, one message at a
//     time, -n times. Timed: all of it.
//   - stream: -producers goroutines enqueue -n no-op jobs one per
//     transaction, calling Notify like a request handler would, while a
//     Runner runs them. Timed: from the first enqueue to the last ack.
//     Compared with goqite-send: both send, receive and delete every
//     message.
//
// jobs/sqlite enqueues with goqite's own Send, then gives the row its
// fair-queueing turn in the same transaction, so the pairs differ in
// that, in how messages are received and acked (goqite's Receive and
// Delete against jobs/sqlite's batched SQL on goqite's table and the
// Runner), and in the writer: onebox's is the store's, which keeps the
// statements run by their text compiled (internal/stmtcache) and lets
// the writes that queue for it share a COMMIT (group commit: each write
// still atomic on its own, in a savepoint, and returning only once the
// COMMIT that holds it is done); goqite's loop runs one statement or
// transaction at a time on a plain database/sql pool. -v prints how many
// writes the store's COMMITs carried.
//
// With -postgres URL the same two pairs run a second time on PostgreSQL,
// in the same command: pg-drain and pg-stream on jobs/postgres against
// pg-goqite-drain and pg-goqite-send, goqite's own SQLFlavorPostgreSQL
// Receive and Delete. Every PostgreSQL measurement gets a schema of its
// own on that server (search_path), dropped after, and a pool of
// -pg-conns connections; the SQLite and PostgreSQL figures of one run can
// be read side by side.
//
// With -nats URL the same two pairs run on JetStream (jobs/nats, file
// storage, a stream of its own per measurement, deleted after):
// nats-drain and nats-stream, each against the raw goqite loop on SQLite
// (goqite-drain, goqite-send) measured next to it in the same run. Its
// producers publish straight to the stream: the figure is the broker's,
// without the outbox relay in front of it. A third pair adds the relay:
// nats-relay-stream, whose producers commit each job to a SQLite outbox
// (jobs/sqlite, one transaction a job) and call Notify, as onebox's web
// instances do with ONEBOX_QUEUE_URL; a jobs.Relay publishes the rows to
// JetStream with their outbox ids as message ids and marks them sent,
// and the Runner runs them from JetStream. Timed from the first enqueue
// to the last ack; against goqite-send on SQLite.
//
// Each run measures every scenario, the onebox scenario of a pair before its
// baseline in every other run so that a drifting machine does not favour
// one side; the ratio of a run is onebox's jobs/s over its baseline's in
// the same run. With -runs > 1 it prints every run, then the median and
// the spread (min–max) of jobs/s and of the ratios. The machine's speed
// and load move the jobs/s; the ratio is the number to watch.
//
// -observe gives onebox's side what production wires around the queue
// (main.go's defaults): the store's OnQuery hook feeding the metrics,
// the traces and the slow-query log, its writer-hold metrics, the
// Runner's job metrics, each
// job's handler traced, and each producer's Send made in a recording
// span, as a request handler's is. Without it the figures leave their
// cost out; goqite's baselines never carry it.
//
// -only names the onebox scenarios to run (with their baselines);
// -cpuprofile, -blockprofile and -mutexprofile profile the whole run,
// each measurement labelled with its scenario (go tool pprof -tagfocus
// scenario=stream reads the CPU profile of one).
//
//	go run ./bench/queue -n 20000 -runs 5
//	go run ./bench/queue -postgres 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' -nats nats://127.0.0.1:4222
//	go run ./bench/queue -only stream -n 20000 -runs 1 -cpuprofile cpu.out -blockprofile block.out
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"maragu.dev/goqite"
	_ "modernc.org/sqlite"

	"onebox/jobs"
	jobnats "onebox/jobs/nats"
	jobpg "onebox/jobs/postgres"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/ops/metrics"
	"onebox/ops/slowquery"
	"onebox/ops/tracing"
	"onebox/store"
	storesqlite "onebox/store/sqlite"
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

// goqitePostgresSchema is goqite v0.4.0's schema_postgres.sql without its
// first line, "create extension if not exists pgcrypto": the extension
// belongs to the database, which must have it already.
const goqitePostgresSchema = `create function update_timestamp()
returns trigger as $$
begin
   new.updated = now();
   return new;
end;
$$ language plpgsql;

create table goqite (
  id text primary key default ('m_' || encode(gen_random_bytes(16), 'hex')),
  created timestamptz not null default now(),
  updated timestamptz not null default now(),
  queue text not null,
  body bytea not null,
  timeout timestamptz not null default now(),
  received integer not null default 0,
  priority integer not null default 0
);

create trigger goqite_updated_timestamp
before update on goqite
for each row execute procedure update_timestamp();

create index goqite_queue_priority_created_idx on goqite (queue, priority desc, created);`

// job is onebox's i-th job: noopJob, with the fair key i mod -keys.
func (b bench) job(i int) jobs.Message {
	m := noopJob()
	if b.keys > 0 {
		m.FairKey = "owner-" + strconv.Itoa(i%b.keys)
	}
	return m
}

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
	runs := flag.Int("runs", 5, "times every scenario is measured")
	producers := flag.Int("producers", 4, "goroutines enqueueing in the stream scenario")
	concurrency := flag.Int("concurrency", 8, "Runner workers for the no-op kind")
	verbose := flag.Bool("v", false, "print the Runner's Receive and Ack calls per onebox measurement")
	pgURL := flag.String("postgres", "", "also run every pair on the PostgreSQL server at this URL (a schema per measurement, dropped after)")
	pgConns := flag.Int("pg-conns", 4, "pool size of each PostgreSQL measurement")
	natsURL := flag.String("nats", "", "also run every pair on JetStream at this NATS server URL (a stream per measurement, deleted after)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	blockProfile := flag.String("blockprofile", "", "write a blocking profile of the whole run to this file")
	mutexProfile := flag.String("mutexprofile", "", "write a mutex contention profile of the whole run to this file")
	keys := flag.Int("keys", 0, "give onebox's jobs fair keys, job i the key i mod keys, as photo jobs carry their owner's (0: no key)")
	only := flag.String("only", "", "run only the pairs whose onebox scenario is named here, comma-separated (stream,nats-relay-stream)")
	observe := flag.Bool("observe", false, "wire production's metrics, traces and slow-query log around onebox's queue and store (SQLite)")
	flag.Parse()
	if *n < 1 || *runs < 1 {
		fmt.Fprintln(os.Stderr, "queue: -n and -runs must be at least 1")
		os.Exit(2)
	}
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
	if *blockProfile != "" {
		runtime.SetBlockProfileRate(1)
		defer writeProfile("block", *blockProfile)
	}
	if *mutexProfile != "" {
		runtime.SetMutexProfileFraction(1)
		defer writeProfile("mutex", *mutexProfile)
	}
	var names []string
	if *only != "" {
		names = strings.Split(*only, ",")
	}
	b := bench{only: names, keys: *keys, n: *n, producers: *producers, concurrency: *concurrency, verbose: *verbose, pgURL: *pgURL, pgConns: *pgConns, natsURL: *natsURL, observe: *observe}
	if err := b.run(context.Background(), *runs); err != nil {
		fmt.Fprintln(os.Stderr, "queue:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

type bench struct {
	n, producers, concurrency int
	keys                      int // onebox's jobs' fair keys; none when 0
	verbose                   bool
	pgURL                     string
	pgConns                   int
	natsURL                   string
	only                      []string // pair names to run; all when empty
	observe                   bool     // production's hooks on onebox's side
}

// observability is what main.go wires around the store and the Runner,
// made fresh for each measurement; the zero value (nil parts) is none.
type observability struct {
	metrics *metrics.Metrics
	tracing *tracing.Tracing
	slow    *slowquery.Log
}

func newObservability(kind string) observability {
	return observability{
		metrics: metrics.New(metrics.Options{Kinds: []string{kind}}),
		tracing: tracing.New(tracing.Options{}),
		slow:    slowquery.New(slowquery.Options{Threshold: 100 * time.Millisecond}),
	}
}

// request runs fn as a request handler would: in a root span of its
// own, when traced.
func (o observability) request(ctx context.Context, fn func(context.Context) error) error {
	if o.tracing == nil {
		return fn(ctx)
	}
	ctx, span := o.tracing.Tracer().Start(ctx, "POST /photos")
	defer span.End()
	return fn(ctx)
}

// onQuery is main.go's store hook.
func (o observability) onQuery(ctx context.Context, ev store.QueryEvent) {
	o.metrics.Query(ctx, ev)
	o.tracing.Query(ctx, ev)
	o.slow.Observe(ctx, ev)
}

// span is a scenario's timed part: its wall-clock time and the CPU time
// the process used meanwhile.
type span struct{ wall, cpu time.Duration }

type stopwatch struct {
	start time.Time
	cpu   time.Duration
}

func startWatch() stopwatch { return stopwatch{start: time.Now(), cpu: cpuTime()} }

func (w stopwatch) stop() span { return span{wall: time.Since(w.start), cpu: cpuTime() - w.cpu} }

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writeProfile writes the named runtime profile to path.
func writeProfile(name, path string) {
	f, err := os.Create(path)
	if err == nil {
		err = errors.Join(pprof.Lookup(name).WriteTo(f, 0), f.Close())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "queue:", err)
	}
}

// pair is an onebox scenario and the goqite baseline doing the same work,
// each on a fresh database that open makes (openBase for the baseline,
// when the onebox side is not a database goqite runs on).
type pair struct {
	name, baseline string
	open, openBase opener
	onebox, goqite func(ctx context.Context, db database) (span, error)
}

// opener makes a fresh database named name for one measurement, with
// goqite's own schema (goqiteOnly) or onebox's.
type opener func(ctx context.Context, name string, goqiteOnly bool) (database, error)

// database is one measurement's database: db for goqite and for sending
// in transactions (nil on a broker); queue, onebox's, unless it has
// goqite's schema only. With an outbox, producers send to it and a
// jobs.Relay moves its rows to queue, the broker.
type database struct {
	db     *sql.DB
	flavor goqite.SQLFlavor
	queue  jobs.Queue
	outbox jobs.Queue
	obs    observability // with -observe on SQLite
	close  func()
}

// txSender is what jobs/sqlite and jobs/postgres offer besides jobs.Queue.
type txSender interface {
	SendTx(ctx context.Context, tx *sql.Tx, m jobs.Message, o jobs.SendOptions) error
}

func (b bench) run(ctx context.Context, runs int) error {
	dir, err := os.MkdirTemp("", "onebox-queue-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	load, _ := os.ReadFile("/proc/loadavg") // Linux only; empty elsewhere
	fmt.Printf("n=%d runs=%d producers=%d concurrency=%d GOMAXPROCS=%d loadavg=%s\n",
		b.n, runs, b.producers, b.concurrency, runtime.GOMAXPROCS(0), strings.TrimSpace(string(load)))

	sqlite := b.openSQLite(dir)
	pairs := b.pairs("", "", sqlite, nil)
	if b.pgURL != "" {
		pairs = append(pairs, b.pairs("pg-", "pg-", b.openPostgres, nil)...)
	}
	if b.natsURL != "" {
		nc, err := nats.Connect(b.natsURL, nats.Name("onebox-bench-queue"))
		if err != nil {
			return fmt.Errorf("-nats: %w", err)
		}
		defer nc.Close()
		pairs = append(pairs, b.pairs("nats-", "", b.openNATS(nc), sqlite)...)
		pairs = append(pairs, pair{name: "nats-relay-stream", baseline: "goqite-send", open: b.openRelay(sqlite, b.openNATS(nc)), openBase: sqlite,
			onebox: func(ctx context.Context, db database) (span, error) { return b.onebox(ctx, db, false) },
			goqite: b.goqiteSend})
	}
	if len(b.only) > 0 {
		pairs = slices.DeleteFunc(pairs, func(p pair) bool { return !slices.Contains(b.only, p.name) })
		if len(pairs) == 0 {
			return fmt.Errorf("-only %s: no such scenario (or its backend's flag is missing)", strings.Join(b.only, ","))
		}
	}
	rates := map[string][]float64{} // jobs/s per run, by scenario
	ratios := map[string][]float64{}
	seq := 0
	measure := func(run int, name string, open opener, goqiteOnly bool, f func(context.Context, database) (span, error)) (float64, error) {
		seq++ // a baseline shared by several pairs gets a file per measurement
		db, err := open(ctx, fmt.Sprintf("%s-%d-%d", name, run, seq), goqiteOnly)
		if err != nil {
			return 0, fmt.Errorf("run %d, %s: %w", run, name, err)
		}
		// The label lets a profile be read per scenario:
		// go tool pprof -tagfocus scenario=stream.
		var sp span
		pprof.Do(ctx, pprof.Labels("scenario", name), func(ctx context.Context) { sp, err = f(ctx, db) })
		db.close()
		if err != nil {
			return 0, fmt.Errorf("run %d, %s: %w", run, name, err)
		}
		if b.verbose {
			// The process's CPU time (user + system) moves less with
			// the machine's load than throughput does: with a broker on
			// the same machine it leaves out the broker's. The timed
			// part's only: a drain's prefill is not in it.
			fmt.Printf("\n  %s: %.0f µs of CPU a job", name, float64(sp.cpu.Microseconds())/float64(b.n))
		}
		r := float64(b.n) / sp.wall.Seconds()
		rates[name] = append(rates[name], r)
		return r, nil
	}
	for run := 1; run <= runs; run++ {
		fmt.Printf("run %d:", run)
		for _, p := range pairs {
			var base, own float64
			var err error
			openBase := p.openBase
			if openBase == nil {
				openBase = p.open
			}
			// A baseline shared by several pairs is measured for each,
			// next to its onebox side: rates lists every measurement.
			if run%2 == 1 {
				if base, err = measure(run, p.baseline, openBase, true, p.goqite); err == nil {
					own, err = measure(run, p.name, p.open, false, p.onebox)
				}
			} else {
				if own, err = measure(run, p.name, p.open, false, p.onebox); err == nil {
					base, err = measure(run, p.baseline, openBase, true, p.goqite)
				}
			}
			if err != nil {
				fmt.Println()
				return err
			}
			ratios[p.name] = append(ratios[p.name], own/base)
			fmt.Printf("  %s %.0f/s, %s %.0f/s, %.2fx", p.baseline, base, p.name, own, own/base)
		}
		fmt.Println()
	}

	fmt.Printf("\n%-16s %-16s %24s %24s\n", "scenario", "baseline", "jobs/s median (min-max)", "ratio median (min-max)")
	for _, p := range pairs {
		for _, name := range []string{p.baseline, p.name} {
			r := summarize(rates[name])
			ratio, base := "1.00", "-"
			if name == p.name {
				q := summarize(ratios[name])
				ratio = fmt.Sprintf("%.2fx (%.2f-%.2f)", q.median, q.min, q.max)
				base = p.baseline
			}
			fmt.Printf("%-16s %-16s %24s %24s\n", name, base,
				fmt.Sprintf("%.0f (%.0f-%.0f)", r.median, r.min, r.max), ratio)
		}
	}
	return nil
}

// pairs are the two pairs on the queues open makes, their names
// prefixed, against baselines named with basePrefix on the databases
// openBase makes (nil: open's).
func (b bench) pairs(prefix, basePrefix string, open, openBase opener) []pair {
	return []pair{
		{name: prefix + "drain", baseline: basePrefix + "goqite-drain", open: open, openBase: openBase,
			onebox: func(ctx context.Context, db database) (span, error) { return b.onebox(ctx, db, true) },
			goqite: b.goqiteDrain},
		{name: prefix + "stream", baseline: basePrefix + "goqite-send", open: open, openBase: openBase,
			onebox: func(ctx context.Context, db database) (span, error) { return b.onebox(ctx, db, false) },
			goqite: b.goqiteSend},
	}
}

// openSQLite makes databases in dir: onebox's opened by store/sqlite
// itself (its pragmas, its checkpointer, its writer lock and group
// commit), its queue the store's (Store.Queue), as onebox runs it;
// goqite's opened with the same pragmas and run as goqite's users would
// run it, on a plain database/sql pool.
func (b bench) openSQLite(dir string) opener {
	return func(ctx context.Context, name string, goqiteOnly bool) (database, error) {
		path := filepath.Join(dir, name+".db")
		if !goqiteOnly {
			var obs observability
			opts := storesqlite.Options{Path: path}
			if b.observe {
				obs = newObservability(noopJob().Kind)
				opts.OnQuery = obs.onQuery
				opts.OnWriterHold = func(h storesqlite.WriterHold) { obs.metrics.WriterHold(metrics.WriterHold(h)) }
			}
			st, err := storesqlite.New(ctx, opts)
			if err != nil {
				return database{}, err
			}
			return database{queue: st.Queue(jobsqlite.Options{}), obs: obs, close: func() {
				if b.verbose {
					s := st.Stats()
					fmt.Printf("\n  %s: %d writes in %d commits (%.1f each)", name, s.GroupWrites, s.GroupCommits, float64(s.GroupWrites)/float64(max(s.GroupCommits, 1)))
				}
				_ = st.Close()
			}}, nil
		}
		writer, reader, err := open(path)
		if err != nil {
			return database{}, err
		}
		d := database{db: writer, flavor: goqite.SQLFlavorSQLite, close: func() { closeAll(writer, reader) }}
		if _, err := writer.ExecContext(ctx, goqiteSchema); err != nil {
			d.close()
			return database{}, err
		}
		return d, nil
	}
}

// openPostgres makes a schema of its own on the server at -postgres and
// opens database/sql over a pgx pool in it, as store/postgres does.
func (b bench) openPostgres(ctx context.Context, _ string, goqiteOnly bool) (database, error) {
	// admin makes and drops the schema, outside the measured pool.
	admin, err := sql.Open("pgx", b.pgURL)
	if err != nil {
		return database{}, err
	}
	admin.SetMaxOpenConns(1)
	schema := "bench_queue_" + strings.ToLower(rand.Text())
	if _, err := admin.ExecContext(ctx, "create schema "+schema); err != nil {
		return database{}, errors.Join(err, admin.Close())
	}
	d := database{flavor: goqite.SQLFlavorPostgreSQL}
	var pool *pgxpool.Pool
	d.close = func() {
		if d.db != nil {
			_ = d.db.Close()
		}
		if pool != nil {
			pool.Close()
		}
		if _, err := admin.ExecContext(context.Background(), "drop schema "+schema+" cascade"); err != nil {
			fmt.Fprintln(os.Stderr, "queue: drop schema:", err)
		}
		_ = admin.Close()
	}
	u, err := url.Parse(b.pgURL)
	if err != nil {
		d.close()
		return database{}, err
	}
	q := u.Query()
	q.Set("search_path", schema+",public")
	q.Set("pool_max_conns", fmt.Sprint(b.pgConns))
	u.RawQuery = q.Encode()
	if pool, err = pgxpool.New(ctx, u.String()); err != nil {
		d.close()
		return database{}, err
	}
	d.db = stdlib.OpenDBFromPool(pool)
	ddl := jobpg.Schema + ";" + jobpg.FairSchema
	if goqiteOnly {
		ddl = goqitePostgresSchema
	} else {
		d.queue = jobpg.New(d.db, jobpg.Options{})
	}
	if _, err := d.db.ExecContext(ctx, ddl); err != nil {
		d.close()
		return database{}, err
	}
	return d, nil
}

// openNATS makes a JetStream queue of its own on nc per measurement,
// on file storage as a deployment would have it, its streams deleted
// after.
func (b bench) openNATS(nc *nats.Conn) opener {
	return func(ctx context.Context, _ string, goqiteOnly bool) (database, error) {
		if goqiteOnly {
			return database{}, errors.New("JetStream has no goqite baseline of its own")
		}
		id := strings.ToLower(rand.Text())[:12]
		q, err := jobnats.New(ctx, nc, jobnats.Options{Stream: "BENCH_" + strings.ToUpper(id), Prefix: "bench" + id, Storage: jetstream.FileStorage})
		if err != nil {
			return database{}, err
		}
		return database{queue: q, close: func() {
			if err := q.Delete(context.Background()); err != nil {
				fmt.Fprintln(os.Stderr, "queue: delete streams:", err)
			}
		}}, nil
	}
}

// openRelay makes a SQLite outbox with outbox and a broker queue with
// broker, for the relay path: producers commit to the outbox, the Relay
// publishes to the broker, the Runner runs from the broker.
func (b bench) openRelay(outbox, broker opener) opener {
	return func(ctx context.Context, name string, goqiteOnly bool) (database, error) {
		if goqiteOnly {
			return database{}, errors.New("the relay path has no goqite baseline of its own")
		}
		ob, err := outbox(ctx, name, false)
		if err != nil {
			return database{}, err
		}
		d, err := broker(ctx, name, false)
		if err != nil {
			ob.close()
			return database{}, err
		}
		d.outbox = ob.queue
		closeBroker := d.close
		d.close = func() { closeBroker(); ob.close() }
		return d, nil
	}
}

type summary struct{ median, min, max float64 }

// summarize gives the median (the mean of the middle two for an even
// count) and the range of xs, which must not be empty.
func summarize(xs []float64) summary {
	s := slices.Sorted(slices.Values(xs))
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + m) / 2
	}
	return summary{median: m, min: s[0], max: s[len(s)-1]}
}

// goqiteQueue is the baselines' queue: goqite's own, on db.
func goqiteQueue(db database) *goqite.Queue {
	return goqite.New(goqite.NewOpts{DB: db.db, Name: "jobs:noop", SQLFlavor: db.flavor, Timeout: 30 * time.Second})
}

// goqiteSend is the baseline of stream: Send, Receive, Delete, one
// message at a time, with goqite's API.
func (b bench) goqiteSend(ctx context.Context, db database) (span, error) {
	q := goqiteQueue(db)
	body, err := jobs.Encode(noopJob())
	if err != nil {
		return span{}, err
	}
	w := startWatch()
	for range b.n {
		if err := q.Send(ctx, goqite.Message{Body: body}); err != nil {
			return span{}, err
		}
		if err := receiveDelete(ctx, q); err != nil {
			return span{}, err
		}
	}
	return w.stop(), nil
}

// goqiteDrain is the baseline of drain: n messages enqueued beforehand,
// 1000 per transaction, then Receive and Delete, one message at a time,
// with goqite's API; only the drain is timed.
func (b bench) goqiteDrain(ctx context.Context, db database) (span, error) {
	q := goqiteQueue(db)
	body, err := jobs.Encode(noopJob())
	if err != nil {
		return span{}, err
	}
	err = inBatches(ctx, db.db, b.n, func(tx *sql.Tx) error { return q.SendTx(ctx, tx, goqite.Message{Body: body}) })
	if err != nil {
		return span{}, err
	}
	w := startWatch()
	for range b.n {
		if err := receiveDelete(ctx, q); err != nil {
			return span{}, err
		}
	}
	return w.stop(), nil
}

func receiveDelete(ctx context.Context, q *goqite.Queue) error {
	m, err := q.Receive(ctx)
	if err != nil {
		return err
	}
	if m == nil {
		return errors.New("received nothing")
	}
	return q.Delete(ctx, m.ID)
}

// onebox runs n no-op jobs through onebox's queue and the Runner:
// enqueued while the Runner runs (stream), or all beforehand and not
// timed (drain).
func (b bench) onebox(ctx context.Context, db database, prefill bool) (span, error) {
	n, producers, concurrency := b.n, b.producers, b.concurrency
	q := db.queue
	if prefill {
		if err := b.prefillQueue(ctx, db, n); err != nil {
			return span{}, err
		}
	}
	counted := &counter{Queue: q, want: int64(n), done: make(chan struct{})}
	obs := db.obs
	r := jobs.NewRunner(counted, jobs.RunnerOptions{OnDone: obs.metrics.JobDone, OnAbandoned: obs.metrics.JobAbandoned, OnLeaseLost: obs.metrics.JobLeaseLost})
	job := noopJob()
	r.Register(job.Kind, obs.tracing.Job(func(context.Context, jobs.Message) error { return nil }), jobs.KindOptions{Concurrency: concurrency})

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	w := startWatch()
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(runCtx) }()

	// Producers send to the queue, or to the outbox the relay moves to
	// it; a request handler wakes both after its commit.
	send, notify := q, r.Notify
	relayDone := make(chan error, 1)
	if db.outbox != nil {
		relay := jobs.NewRelay(db.outbox, q.(jobs.IDSender), jobs.RelayOptions{})
		go func() { relayDone <- relay.Run(runCtx) }()
		send, notify = db.outbox, func() { relay.Notify(); r.Notify() }
	} else {
		relayDone <- nil
	}
	sendErr := make(chan error, producers)
	if !prefill {
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for i := p; i < n; i += producers {
					err := obs.request(ctx, func(ctx context.Context) error {
						return send.Send(ctx, b.job(i), jobs.SendOptions{})
					})
					if err != nil {
						sendErr <- err
						return
					}
					notify()
				}
			})
		}
		go func() { wg.Wait(); close(sendErr) }()
	}

	select {
	case <-counted.done:
	case err := <-sendErr:
		if err != nil {
			return span{}, err
		}
		<-counted.done
	case err := <-runErr:
		return span{}, fmt.Errorf("runner stopped: %v", err)
	case <-time.After(10 * time.Minute):
		return span{}, errors.New("timed out")
	}
	elapsed := w.stop()
	stop()
	if err := errors.Join(<-runErr, <-relayDone); err != nil {
		return span{}, err
	}
	if !b.verbose {
		return elapsed, nil
	}
	fmt.Printf("\n  %d Receive calls (%.1f jobs each), %d Ack calls (%.1f jobs each)\n",
		counted.receives.Load(), float64(n)/float64(counted.receives.Load()), counted.acks.Load(), float64(n)/float64(counted.acks.Load()))
	return elapsed, nil
}

// prefillQueue enqueues n jobs: 1000 per transaction on a database this
// bench opened (PostgreSQL), by 16 concurrent senders on the store's
// SQLite queue (whose writer the store keeps) and on a broker.
func (b bench) prefillQueue(ctx context.Context, db database, n int) error {
	var next atomic.Int64
	if tq, ok := db.queue.(txSender); ok && db.db != nil {
		return inBatches(ctx, db.db, n, func(tx *sql.Tx) error {
			return tq.SendTx(ctx, tx, b.job(int(next.Add(1))), jobs.SendOptions{})
		})
	}
	var g errgroup.Group
	for range 16 {
		g.Go(func() error {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if err := db.queue.Send(ctx, b.job(int(i)), jobs.SendOptions{}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// inBatches calls send n times, 1000 calls per transaction.
func inBatches(ctx context.Context, writer *sql.DB, n int, send func(*sql.Tx) error) error {
	for n > 0 {
		tx, err := writer.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for range min(n, 1000) {
			if err := send(tx); err != nil {
				return errors.Join(err, tx.Rollback())
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

// AckInterval passes the queue's preference on (jobs.AckPacer), as the
// Runner would see it without the counter.
func (c *counter) AckInterval() time.Duration { return jobs.AckIntervalOf(c.Queue) }

func (c *counter) Receive(ctx context.Context, kind string, max int, visibility time.Duration) ([]jobs.Message, error) {
	c.receives.Add(1)
	return c.Queue.Receive(ctx, kind, max, visibility)
}

func (c *counter) Ack(ctx context.Context, ids ...jobs.Receipt) error {
	if err := c.Queue.Ack(ctx, ids...); err != nil {
		return err
	}
	c.acks.Add(1)
	if c.acked.Add(int64(len(ids))) >= c.want {
		c.once.Do(func() { close(c.done) })
	}
	return nil
}

// open opens path for goqite's baseline with store/sqlite's pragmas:
// one writer connection taking the write lock at BEGIN, a query-only
// reader pool.
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
