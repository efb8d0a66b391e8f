package app_test

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onebox/app"
	"onebox/auth"
	"onebox/cache"
	cachememory "onebox/cache/memory"
	"onebox/imaging"
	"onebox/internal/pgtest"
	"onebox/internal/syncbuf"
	"onebox/jobs"
	jobpg "onebox/jobs/postgres"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/media"
	medialocal "onebox/media/local"
	"onebox/moderation/phash"
	"onebox/notify"
	notifymemory "onebox/notify/memory"
	"onebox/ops"
	"onebox/ops/errlog"
	"onebox/ops/logging"
	"onebox/ops/metrics"
	"onebox/ops/slowquery"
	"onebox/ops/tracing"
	"onebox/photos"
	"onebox/pipeline"
	"onebox/ratelimit"
	limitmemory "onebox/ratelimit/memory"
	"onebox/store"
	"onebox/store/postgres"
	"onebox/store/sqlite"
)

// storeEnv picks the store the bundles open: unset is SQLite, "postgres"
// is store/postgres on a schema of each test's own. TestMain sets it for
// the package's second run.
const storeEnv = "ONEBOX_TEST_APP_STORE"

// onPostgres tells whether this run's bundles open store/postgres.
func onPostgres() bool { return os.Getenv(storeEnv) == "postgres" }

// TestMain runs the package's tests on SQLite and then, with
// ONEBOX_TEST_POSTGRES_URL set, runs the same test binary again with the
// same flags on PostgreSQL: the same API must give the same answers on
// both stores. Benchmarks run only on SQLite, fuzzing and -list only once.
func TestMain(m *testing.M) {
	code := m.Run()
	if os.Getenv(storeEnv) != "" || os.Getenv(pgtest.Env) == "" || flagSet("test.fuzz") || flagSet("test.list") {
		os.Exit(code)
	}
	fmt.Printf("=== the app tests again on PostgreSQL (%s=postgres)\n", storeEnv)
	cmd := exec.Command(os.Args[0], append(os.Args[1:], "-test.bench=^$")...)
	cmd.Env = append(os.Environ(), storeEnv+"=postgres")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "app tests on PostgreSQL: %v\n", err)
		code = cmp.Or(code, 1)
	}
	os.Exit(code)
}

// flagSet tells whether the testing flag name has a value.
func flagSet(name string) bool {
	f := flag.Lookup(name)
	return f != nil && f.Value.String() != ""
}

// testStore is what the bundle needs of a store besides store.Store.
type testStore interface {
	store.Store
	Ping(context.Context) error
	Explain(ctx context.Context, query string) (string, error)
	Close() error
}

// bundle is one running API on a fresh database.
type bundle struct {
	t       testing.TB
	url     string
	handler http.Handler
	app     *app.App
	store   testStore
	dbStats func() metrics.DBStats
	// maxWriters is the most connections the store opens for writes.
	maxWriters int
	dataDir    string // the database's directory on SQLite; a temp dir on PostgreSQL
	dbPath     string // SQLite's file; "" on PostgreSQL
	health     *ops.Health
	media      media.Storage
	queue      jobs.Queue
	admin      http.Handler
	logs       *syncbuf.Buffer
	queries    sync.Map // query name → *atomic.Int64
	// As the setup turns them on (else nil): metrics, traces and the
	// slow-query log.
	metrics *metrics.Metrics
	tracing *tracing.Tracing
	slow    *slowquery.Log
	errors  *errlog.Log // the 5xx answers, as main keeps them

	mediaDir string // media's directory, to look for files left behind
	hub      notify.Hub
}

type setup struct {
	opts        app.Options
	noCache     bool
	busyTimeout time.Duration
	wrapStore   func(store.Store) store.Store
	wrapCache   func(cache.Cache) cache.Cache // a fault in front of the memory cache
	noWorkers   bool                          // leave uploaded photos processing
	clock       func() time.Time              // the API's clock; nil is time.Now
	blocked     []uint64                      // moderation blocklist
	// wrapLimiter puts a fault in front of the memory limiter.
	wrapLimiter func(ratelimit.Limiter) ratelimit.Limiter
	// metrics, tracing and slowQuery (the slow-query log's threshold; 0
	// is off) turn each on, wired as main wires them.
	metrics, tracing bool
	slowQuery        time.Duration
	logLevel         slog.Level // default info
	discardLogs      bool       // for benchmarks: the log buffer would grow with b.N

	// wrapMedia is put in front of the app's media storage (not the
	// pipeline's).
	wrapMedia func(media.Storage) media.Storage
	// wrapHub is put in front of the hub of the app and the pipeline.
	wrapHub func(notify.Hub) notify.Hub
	// drainTimeout is the Runner's wait for running jobs when the test
	// ends (then it cancels them); 0 is the Runner's default.
	drainTimeout time.Duration
}

func generous(name string) ratelimit.Policy {
	return ratelimit.Policy{Name: name, Limit: 1_000_000, Window: time.Second}
}

func defaultOptions() app.Options {
	return app.Options{
		CacheTTL: time.Minute, CacheNegativeTTL: 5 * time.Second, ProfileSMaxAge: 10 * time.Second,
		SessionTTL: time.Hour, RequestTimeout: 10 * time.Second, MaxBodyBytes: 4096, AccessLog: true,
		MaxUploadBytes: 8 << 20, MaxPixels: 50_000_000, UploadTimeout: time.Minute,
		Policies: app.Policies{API: generous("api"), Auth: generous("auth"), AuthHandle: generous("auth-handle"), AuthDevice: generous("auth-device"), Upload: generous("upload")},
	}
}

func newBundle(t testing.TB, mods ...func(*setup)) *bundle {
	t.Helper()
	s := setup{opts: defaultOptions()}
	for _, m := range mods {
		m(&s)
	}
	b := &bundle{t: t, logs: &syncbuf.Buffer{}, dataDir: t.TempDir(), errors: errlog.New(20)}
	log := slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: s.logLevel}))
	if s.discardLogs {
		// As main.go makes it, batched lines included.
		var stop func() error
		log, stop = logging.New(io.Discard, logging.Options{Level: s.logLevel, FlushEvery: 200 * time.Millisecond})
		t.Cleanup(func() { _ = stop() })
	}
	if s.metrics {
		b.metrics = metrics.New(metrics.Options{Kinds: []string{photos.KindProcess, photos.KindCleanup}})
	}
	if s.tracing {
		// Keep enough that polling a photo cannot crowd out the traces a
		// test looks for.
		b.tracing = tracing.New(tracing.Options{Keep: 1000})
	}
	b.slow = slowquery.New(slowquery.Options{Threshold: s.slowQuery, Logger: log})
	t.Cleanup(b.slow.Wait) // runs after the store closed: the last plans may fail
	onQuery := func(ctx context.Context, ev store.QueryEvent) {
		n, _ := b.queries.LoadOrStore(ev.Name, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		b.metrics.Query(ctx, ev)
		b.tracing.Query(ctx, ev)
		b.slow.Observe(ctx, ev)
	}
	var queue jobs.Queue
	if onPostgres() {
		st, err := postgres.New(context.Background(), postgres.Options{URL: pgtest.Schema(t, "app"), OnQuery: onQuery})
		if err != nil {
			t.Fatal(err)
		}
		b.store, queue, b.maxWriters = st, st.Queue(jobpg.Options{Logger: log}), pgtest.MaxConns
		b.dbStats = func() metrics.DBStats {
			s := st.Stats()
			return metrics.DBStats{WriterOpen: s.Open, WriterWait: s.Wait}
		}
	} else {
		b.dbPath = filepath.Join(b.dataDir, "test.db")
		st, err := sqlite.New(context.Background(), sqlite.Options{Path: b.dbPath, BusyTimeout: s.busyTimeout, OnQuery: onQuery})
		if err != nil {
			t.Fatal(err)
		}
		b.store, queue, b.maxWriters = st, st.Queue(jobsqlite.Options{Logger: log}), 1
		b.dbStats = func() metrics.DBStats {
			s := st.Stats()
			return metrics.DBStats{WriterOpen: s.WriterOpen, ReaderOpen: s.ReaderOpen, WriterWait: s.WriterWait}
		}
	}
	st := b.store
	t.Cleanup(func() { st.Close() })
	b.slow.SetExplain(st.Explain)
	var c cache.Cache
	if !s.noCache {
		o := cachememory.Options{MaxBytes: 1 << 20}
		if b.metrics != nil {
			o.OnEvict = func(key string) { b.metrics.Cache(app.CacheName(key)).Evicted() }
		}
		c = cachememory.New(o)
		if s.wrapCache != nil {
			c = s.wrapCache(c)
		}
	}
	var ss store.Store = st
	if s.wrapStore != nil {
		ss = s.wrapStore(st)
	}
	b.health = ops.NewHealth(ops.Check{Name: "database", Probe: st.Ping})
	b.mediaDir = t.TempDir()
	med, err := medialocal.New(b.mediaDir)
	if err != nil {
		t.Fatal(err)
	}
	b.media = med
	var appMedia media.Storage = med
	if s.wrapMedia != nil {
		appMedia = s.wrapMedia(med)
	}
	var hub notify.Hub = notifymemory.New()
	if s.wrapHub != nil {
		hub = s.wrapHub(hub)
	}
	b.hub = hub
	b.queue = queue
	pipe := pipeline.New(ss, med, phash.New(s.blocked, 0), hub, log, pipeline.Options{
		MaxPixels: s.opts.MaxPixels, JPEGQuality: 80, DecodeMemory: 1 << 30,
		OnStep: func(ctx context.Context, step string, d time.Duration) {
			b.metrics.PipelineStep(ctx, step, d)
			b.tracing.Record(ctx, "pipeline."+step, d, nil)
		},
	})
	runner := jobs.NewRunner(queue, jobs.RunnerOptions{
		Logger: log, PollInterval: 20 * time.Millisecond, MaxPollInterval: 200 * time.Millisecond, OnDone: b.metrics.JobDone,
		DrainTimeout: s.drainTimeout,
	})
	runner.Register(photos.KindProcess, b.tracing.Job(pipe.Process), jobs.KindOptions{Concurrency: 2, MaxAttempts: 3, Timeout: time.Minute, Backoff: 50 * time.Millisecond})
	runner.Register(photos.KindCleanup, b.tracing.Job(pipe.Cleanup), jobs.KindOptions{Concurrency: 1, MaxAttempts: 3, Backoff: 50 * time.Millisecond})
	var limiter ratelimit.Limiter = limitmemory.New(limitmemory.Options{})
	if s.wrapLimiter != nil {
		limiter = s.wrapLimiter(limiter)
	}
	a := app.New(app.Deps{
		Store: ss, Cache: c, Limiter: limiter,
		Hasher: auth.NewHasher(auth.Params{Memory: 64, Time: 1, Threads: 1}, 4),
		Health: b.health, Logger: log, Media: appMedia, Hub: hub, Queue: queue, Jobs: runner,
		Metrics: b.metrics, Tracing: b.tracing, Now: s.clock, Errors: b.errors,
	}, s.opts)
	b.app, b.handler = a, a.Handler()
	b.admin = a.AdminHandler()
	srv := httptest.NewUnstartedServer(b.handler)
	srv.Config.RegisterOnShutdown(a.Close)
	srv.Start()
	t.Cleanup(srv.Close)
	b.url = srv.URL
	if !s.noWorkers {
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runner.Run(ctx) }()
		t.Cleanup(func() {
			a.Close()
			stop()
			<-done
		})
	}
	return b
}

func (b *bundle) count(query string) int64 {
	n, ok := b.queries.Load(query)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

// response is a finished HTTP exchange with its body read.
type response struct {
	*http.Response
	body []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// do sends a request; headers come in pairs ("Name", "value", ...).
func (b *bundle) do(method, path, body string, headers ...string) response {
	b.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, b.url+path, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return b.send(req, headers...)
}

// send sets the header pairs on req, sends it and reads the answer.
func (b *bundle) send(req *http.Request, headers ...string) response {
	b.t.Helper()
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return response{res, data}
}

// mustStatus fails the test unless r has the status.
func mustStatus(t testing.TB, r response, want int) {
	t.Helper()
	if r.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, want, r.body)
	}
}

// signup creates a user and logs in, returning the id and a token.
func (b *bundle) signup(handle string) (id, token string) {
	b.t.Helper()
	r := b.do("POST", "/v1/users", `{"handle":"`+handle+`","password":"correct horse"}`)
	mustStatus(b.t, r, http.StatusCreated)
	id = r.json(b.t)["id"].(string)
	return id, b.login(handle, "correct horse")
}

func (b *bundle) login(handle, password string) string {
	b.t.Helper()
	r := b.do("POST", "/v1/sessions", `{"handle":"`+handle+`","password":"`+password+`"}`)
	mustStatus(b.t, r, http.StatusCreated)
	return r.json(b.t)["token"].(string)
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

func mustPrefixes(t *testing.T, cidrs ...string) []netip.Prefix {
	t.Helper()
	var ps []netip.Prefix
	for _, c := range cidrs {
		ps = append(ps, netip.MustParsePrefix(c))
	}
	return ps
}

func crc(typ string, data []byte) []byte {
	c := crc32.NewIEEE()
	c.Write([]byte(typ))
	c.Write(data)
	return binary.BigEndian.AppendUint32(nil, c.Sum32())
}

// mustHash is the perceptual hash of an image file, as the pipeline sees it.
func mustHash(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := imaging.Decode(context.Background(), f, 50_000_000)
	if err != nil {
		t.Fatal(err)
	}
	return phash.Hash(img.Pixels)
}

// mustProblem checks r is a problem+json of status (in the status line and
// the body) and, unless typ is "", of that type; it returns the problem.
func mustProblem(t *testing.T, r response, status int, typ string) map[string]any {
	t.Helper()
	mustStatus(t, r, status)
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s %s: Content-Type %q, want application/problem+json", r.Request.Method, r.Request.URL.Path, ct)
	}
	p := r.json(t)
	if p["status"] != float64(status) {
		t.Fatalf("problem %v, want status %d", p, status)
	}
	if typ != "" && p["type"] != typ {
		t.Fatalf("problem %v, want type %s", p, typ)
	}
	return p
}
