// Command onebox is the whole service in one binary: `onebox serve` (the
// default) runs it, `migrate` applies the schema, `config` prints the
// effective configuration, `version` the build. This file parses config
// and wires backends by URL scheme; behaviour lives in the packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/sync/errgroup"

	"onebox/app"
	"onebox/auth"
	cachebroadcast "onebox/cache/broadcast"
	"onebox/config"
	"onebox/handover"
	"onebox/internal/redisconn"
	"onebox/jobs"
	"onebox/lease"
	"onebox/media"
	"onebox/moderation"
	"onebox/moderation/phash"
	"onebox/notify"
	"onebox/ops"
	"onebox/ops/drill"
	"onebox/ops/errlog"
	"onebox/ops/logging"
	"onebox/ops/metrics"
	"onebox/ops/slowquery"
	"onebox/ops/tracing"
	"onebox/photos"
	"onebox/pipeline"
	"onebox/ratelimit"
	"onebox/retention"
	"onebox/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	h, err := processHooks()
	if err == nil {
		err = runWith(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr, h)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "onebox:", err)
		os.Exit(1)
	}
}

// processHooks are what only a whole process has: the listening sockets
// it inherits from the process it replaces and hands to the next one
// on SIGHUP (see package handover).
func processHooks() (hooks, error) {
	hand, err := handover.New(handover.Options{})
	if err != nil {
		return hooks{}, err
	}
	upgrades := make(chan os.Signal, 1)
	signal.Notify(upgrades, syscall.SIGHUP)
	return hooks{handover: hand, upgrades: upgrades}, nil
}

func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	return runWith(ctx, args, lookupEnv, stdout, stderr, hooks{})
}

// hooks are what serve takes from the process around it: main's hand-over,
// and what lets a test process reach into serve's wiring (the crash
// test's child, see TestMain).
type hooks struct {
	// handover, if set, is the process's: serve listens through it,
	// signals ready through it, and drains when a replacement is ready.
	// Nil (serve run in-process by a test) listens afresh.
	handover *handover.Handover
	upgrades <-chan os.Signal // each one starts a hand-over
	// media, if set, wraps the media storage.
	media func(media.Storage) media.Storage
}

func runWith(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer, h hooks) error {
	return dispatch(ctx, args, lookupEnv, stdout, stderr, h) // cli.go
}

func serve(ctx context.Context, cfg config.Config, lookupEnv func(string) (string, bool), log *slog.Logger, h hooks) error {
	// Listen before anything is created, so an address in use or not
	// ours leaves no database behind.
	lns, err := listen(cfg, h.handover.Listen)
	if err != nil {
		return err
	}
	r := runsFor(cfg.Role)
	log.Info("role", "role", cfg.Role, "api", r.api, "jobs", r.jobs, "relay", r.relay, "sweeps", r.sweeps)
	defer lns.close() // the servers have closed them by then; harmless twice
	gc := ops.TuneGC(lookupEnv, ops.CgroupMemoryMax(os.DirFS("/")))
	log.Info("garbage collector", "gogc", gc.GCPercent, "memory_limit_bytes", gc.MemoryLimit)
	decodeMemory := pipeline.DecodeBudget(cfg.DecodeMemory, gc.MemoryLimit)
	log.Info("image decodes", "decode_memory_bytes", decodeMemory, "photo_workers", cfg.PhotoWorkers)
	obs, err := newObservability(cfg, lookupEnv, log)
	if err != nil {
		return err
	}
	defer obs.close(log)
	redisconn.SetLogger(log)     // go-redis logs as JSON too
	drills := newDrill(cfg, log) // nil unless ONEBOX_DRILLS
	b := backendTable()
	w := wiring{cfg: cfg, log: log, metrics: obs.metrics, onQuery: drills.ObserveQueries(obs.onQuery)}
	db, err := b.store.Open(ctx, w)
	if err != nil {
		return err
	}
	defer db.Close()
	w.outbox = db.queue
	jq, err := b.queue.Open(ctx, w)
	if err != nil {
		return err
	}
	defer jq.close()
	st, queue := db.Store, jobs.Queue(jq)
	if drills != nil {
		st = drills.Store(st) // every call waits the drill's latency
	}
	obs.slow.SetExplain(db.explain)
	c, err := b.cache.Open(ctx, w)
	if err != nil {
		return err
	}
	if cl, ok := c.(io.Closer); ok { // a connection pool, or a goroutine
		defer cl.Close()
	}
	lim, err := b.limiter.Open(ctx, w)
	if err != nil {
		return err
	}
	if cl, ok := lim.(io.Closer); ok {
		defer cl.Close()
	}
	med, err := openMedia(ctx, b, w)
	if err != nil {
		return err
	}
	if h.media != nil {
		med = h.media(med)
	}
	hub, err := b.hub.Open(ctx, w)
	if err != nil {
		return err
	}
	if cl, ok := hub.(io.Closer); ok {
		defer cl.Close()
	}
	if bus, ok := hub.(notify.Bus); ok && c != nil && strings.HasPrefix(cfg.CacheURL, "memory:") {
		// Several instances, each with its own cache: an invalidation
		// reaches the others over the hub (a lost one lasts a TTL).
		bc := cachebroadcast.New(c, bus, cachebroadcast.Options{OnError: func(key string, err error) {
			log.Warn("cache invalidation not broadcast: other instances serve their entry until its TTL ends", "key", key, "err", err.Error())
		}})
		defer bc.Close() // stops listening; the memory cache closes above
		c = bc
	}
	mod, err := openModerator(cfg)
	if err != nil {
		return err
	}
	pipe := pipeline.New(st, med, mod, hub, log, pipeline.Options{
		MaxPixels: cfg.MaxPixels, JPEGQuality: cfg.JPEGQuality, DecodeMemory: decodeMemory, OnStep: obs.onStep,
	})
	var busy func() bool // the API's, once it exists (below)
	runner := jobs.NewRunner(queue, jobs.RunnerOptions{
		Logger: log, DrainTimeout: cfg.DrainTimeout, Visibility: cfg.JobVisibility, OnDone: obs.metrics.JobDone,
		OnAbandoned: obs.metrics.JobAbandoned, OnLeaseLost: obs.metrics.JobLeaseLost,
		Limiter: lim, // the kinds' rates (kindOptions), in the API's limiter
		// Jobs yield the CPU to requests: a backlog must not starve the API.
		Busy: func() bool { return busy() },
	})
	kinds := kindOptions(cfg)
	process := kinds[photos.KindProcess]
	process.OnDead = pipe.GiveUp // a photo whose job dies is rejected, not left "processing"
	runner.Register(photos.KindProcess, obs.tracing.Job(pipe.Process), process)
	runner.Register(photos.KindCleanup, obs.tracing.Job(pipe.Cleanup), kinds[photos.KindCleanup])
	registerDrillJobs(runner, drills, db.Store, queue)
	// A committed job wakes what moves it on in this process: the relay
	// that publishes it to the broker, and the Runner that may take it.
	var notifier notifyAll
	if jq.relay != nil && r.relay {
		notifier = append(notifier, jq.relay)
	}
	if r.jobs {
		notifier = append(notifier, runner)
	}

	checks := []ops.Check{
		{Name: "database", Timeout: time.Second, Probe: st.Ping},
		// The API reads the queue's stats (the upload backlog), and the
		// workers take their jobs from it.
		{Name: "queue", Timeout: time.Second, Probe: func(ctx context.Context) error { _, err := queue.Stats(ctx); return err }},
		ops.DiskCheck(db.dir, 0.01),
	}
	if r.jobs {
		checks = append(checks, ops.AbandonedJobsCheck(runner.Abandoned, cfg.JobAbandonedMax))
	}
	health := ops.NewHealth(append(checks, db.checks...)...)
	health.Role = cfg.Role
	opsGuard := ops.NewGuard(ops.GuardOptions{Token: cfg.OpsToken}) // one budget of failed logins for the admin listener
	dash := newDashboard(cfg, log, obs, queue, notifier.Notify, drills, opsGuard)
	if cfg.DeviceKey == "" {
		log.Warn("ONEBOX_DEVICE_KEY is empty: device tokens are off, and anyone who exhausts a handle's login budget (ONEBOX_RATE_AUTH_HANDLE) locks its owner out until it refills")
	}
	api := app.New(app.Deps{
		Ops: dash.Handler(), OpsGuard: opsGuard,
		Store: st, Cache: c, Limiter: lim, Health: health, Logger: log, Media: med, Hub: hub, Queue: queue, Jobs: notifier,
		Hasher:  auth.NewHasher(auth.DefaultParams, cfg.HashConcurrency),
		Metrics: obs.metrics, Tracing: obs.tracing, Errors: obs.errors,
	}, app.Options{
		CacheTTL: cfg.CacheTTL, CacheNegativeTTL: cfg.CacheNegative, ProfileSMaxAge: cfg.ProfileSMaxAge,
		SessionTTL: cfg.SessionTTL, RequestTimeout: cfg.RequestTimeout, MaxBodyBytes: cfg.MaxBodyBytes,
		MaxUploadBytes: cfg.MaxUploadBytes, MaxPixels: cfg.MaxPixels, DecodeMemory: decodeMemory, UploadTimeout: cfg.UploadTimeout, UploadBacklog: cfg.UploadBacklog,
		BodyTimeout: cfg.BodyTimeout, SSEPerUser: cfg.SSEPerUser, SSEMax: cfg.SSEMax, MaxInFlight: cfg.MaxInFlight,
		TrustedProxies: cfg.TrustedProxies, AccessLog: cfg.AccessLog, OpsToken: cfg.OpsToken,
		IdempotencyTTL: cfg.IdempotencyTTL, EventsFallbackPoll: cfg.EventsFallbackPoll,
		PublicOrigin: cfg.PublicURL, MediaOrigin: cfg.MediaOrigin, DeviceKey: []byte(cfg.DeviceKey), DeviceTTL: cfg.DeviceTTL,
		Policies: app.Policies{
			API:        policy("api", cfg.RateAPI),
			Auth:       policy("auth", cfg.RateAuth),
			AuthHandle: policy("auth-handle", cfg.RateAuthHandle),
			AuthDevice: policy("auth-device", cfg.RateAuthDevice),
			Upload:     policy("upload", cfg.RateUpload),
		},
	})

	busy = api.Busy
	servers := []ops.Server{}
	publicHandler := api.Handler()
	if !r.api {
		// A worker's public listener answers only the health checks of
		// whatever starts it and watches it.
		mux := http.NewServeMux()
		mux.Handle("GET /health/", publicHandler)
		publicHandler = mux
	}
	public := httpServer(publicHandler, log)
	public.RegisterOnShutdown(api.Close) // event streams end so the drain can finish
	servers = append(servers, ops.Server{Name: "public", Listener: lns.public, Server: public})
	if lns.admin != nil {
		servers = append(servers, ops.Server{Name: "admin", Listener: lns.admin, Server: httpServer(api.AdminHandler(), log)})
	}
	// Everything that runs in the background runs in one group under the
	// signal's context, and that is the one shutdown path: on SIGTERM the
	// servers drain, the workers stop taking jobs and finish what they run
	// within the drain time (the rest waits in the queue for the next
	// start), and the sampling, dashboard and retention loops end; if any
	// of them fails, the group's context ends the others the same way.
	var verify *scheduledVerify // ONEBOX_BACKUP_VERIFY_EVERY, with the sweeps
	if cfg.BackupVerifyEvery > 0 && r.sweeps {
		if verify, err = newScheduledVerify(cfg, db.Store, obs.metrics, log); err != nil {
			return err
		}
		defer verify.close()
	}
	var events retention.Pruner // nil keeps them
	if cfg.EventRetention > 0 {
		events = st
	}
	temp, _ := med.(retention.TempSweeper) // a local directory has temp files
	// A replacement that is ready ends this process as SIGTERM does.
	ctx, replaced := context.WithCancel(ctx)
	defer replaced()
	go func() {
		select {
		case <-h.handover.Replaced():
			log.Info("replaced by a new process: draining")
			replaced()
		case <-ctx.Done():
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	// A drill's stuck jobs return when the process drains, not a drain
	// timeout later.
	context.AfterFunc(gctx, func() { drills.StopStuckJobs() })
	g.Go(func() error { h.handover.Run(gctx, h.upgrades, log); return nil })
	g.Go(func() error {
		// Ready once the store is open (above), the listeners accept
		// (a connection that comes before Serve waits in the kernel's
		// queue) and every readiness check passes; only then does a
		// parent drain. A process that never gets here is killed by its
		// parent, which serves on.
		err := h.handover.Ready(gctx, cfg.PIDFile, func(ctx context.Context) bool { ok, _ := health.Ready(ctx); return ok })
		if errors.Is(err, context.Canceled) {
			return nil
		}
		if err == nil {
			log.Info("ready", "replaces_parent", h.handover.Inherited())
		}
		return err
	})
	if r.jobs {
		g.Go(func() error { return runner.Run(gctx) })
	}
	// The relay and the database's sweeps run on one instance at a time,
	// the one holding their lease; when it stops or dies, another takes
	// over. Both stay correct if two ever run (see package lease).
	locker, err := openLocker(cfg, jq)
	if err != nil {
		return err
	}
	if jq.relay != nil && r.relay {
		g.Go(func() error {
			return lease.Run(gctx, locker, "onebox.relay", lease.RunOptions{Logger: log}, jq.relay.Run)
		})
	}
	g.Go(func() error { return dash.Run(gctx) })
	g.Go(func() error {
		// As often as the dashboard reads them: the writer's hold in
		// progress is a sampled gauge.
		obs.metrics.Sample(gctx, metrics.Sources{Queue: queue.Stats, DB: db.stats, DataDir: db.dir, Interval: cfg.OpsInterval})
		return nil
	})
	if r.sweeps {
		g.Go(func() error {
			return lease.Run(gctx, locker, "onebox.retention", lease.RunOptions{Logger: log}, func(ctx context.Context) error {
				o := retention.Options{Keep: cfg.EventRetention, Keys: st, Logger: log}
				if cfg.JobDeadRetention > 0 || cfg.JobDeadMax > 0 {
					o.Dead, o.DeadKeep, o.DeadMax = queue, cfg.JobDeadRetention, cfg.JobDeadMax
				}
				retention.Run(ctx, events, o)
				return nil
			})
		})
	}
	if verify != nil {
		g.Go(func() error { return verify.run(gctx, locker) })
	}
	if temp != nil { // this instance's own files: swept by each
		g.Go(func() error {
			retention.Run(gctx, nil, retention.Options{Temp: temp, Logger: log})
			return nil
		})
	}
	g.Go(func() error {
		return ops.Run(gctx, servers, ops.RunOptions{
			Health: health, Logger: log, ShutdownDelay: cfg.ShutdownDelay, DrainTimeout: cfg.DrainTimeout,
			HandedOver: h.handover.Replaced(),
		})
	})
	return g.Wait()
}

// runs is what one instance's role runs.
type runs struct {
	api    bool // the API on the public listener (else only /health/)
	jobs   bool // the Runner's workers
	relay  bool // the outbox relay, where there is one
	sweeps bool // the retention sweeps
}

// runsFor maps a role (config.Role*) to what it runs. The relay goes
// with the API: the API commits the jobs, and its own commits wake it at
// once, where a relay in another process would wait its poll. The
// sweeps go with the workers, the background work, so web instances
// added for load add no sweeps (several running at once do not
// conflict, as retention says).
func runsFor(role string) runs {
	switch role {
	case config.RoleWeb:
		return runs{api: true, relay: true}
	case config.RoleWorker:
		return runs{jobs: true, sweeps: true}
	}
	return runs{api: true, jobs: true, relay: true, sweeps: true}
}

// observability is what watches the process: metrics, traces and the
// slow-query log. Each is nil when turned off, and the packages' methods
// accept that.
type observability struct {
	metrics *metrics.Metrics
	tracing *tracing.Tracing
	slow    *slowquery.Log
	errors  *errlog.Log // the last 5xx answers, for the dashboard
}

// newObservability sets up what cfg turns on. Traces are always kept in
// memory (the slowest, for the dashboard); OTEL_EXPORTER_OTLP_ENDPOINT
// (the standard variable) also sends them all to a collector over OTLP
// HTTP, which reads the other OTEL_EXPORTER_OTLP_* variables itself.
func newObservability(cfg config.Config, lookupEnv func(string) (string, bool), log *slog.Logger) (*observability, error) {
	o := &observability{errors: errlog.New(50)}
	if cfg.Metrics {
		workers := map[string]int{}
		for kind, ko := range kindOptions(cfg) {
			workers[kind] = ko.Concurrency
		}
		kinds := []string{photos.KindProcess, photos.KindCleanup}
		if cfg.Drills { // a drill's jobs under their own kind, not "other"
			kinds = append(kinds, drill.KindStuck, drill.KindHoldWriter)
		}
		o.metrics = metrics.New(metrics.Options{Kinds: kinds, Workers: workers, Logger: log, SlowRequest: cfg.AlertP95})
	}
	if cfg.Tracing {
		var exp sdktrace.SpanExporter
		if ep, _ := lookupEnv("OTEL_EXPORTER_OTLP_ENDPOINT"); ep != "" {
			var err error
			exp, err = otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(strings.TrimSuffix(ep, "/")+"/v1/traces"))
			if err != nil {
				return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
			}
			// The SDK reports failed exports here, not to a logger of ours.
			otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing: export failed", "error", err) }))
		}
		o.tracing = tracing.New(tracing.Options{Exporter: exp, Version: version()})
	}
	o.slow = slowquery.New(slowquery.Options{Threshold: cfg.SlowQuery, Logger: log}) // explains once the store is open
	return o, nil
}

// onQuery is the store's OnQuery hook.
func (o *observability) onQuery(ctx context.Context, ev store.QueryEvent) {
	o.metrics.Query(ctx, ev)
	o.tracing.Query(ctx, ev)
	o.slow.Observe(ctx, ev)
}

// onStep is the pipeline's OnStep hook.
func (o *observability) onStep(ctx context.Context, step string, d time.Duration) {
	o.metrics.PipelineStep(ctx, step, d)
	o.tracing.Record(ctx, "pipeline."+step, d, nil)
}

// close sends the last spans to the collector.
func (o *observability) close(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.tracing.Shutdown(ctx); err != nil {
		log.Warn("tracing: shutdown", "error", err)
	}
	o.slow.Wait()
}

func httpServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

func policy(name string, r config.Rate) ratelimit.Policy {
	return ratelimit.Policy{Name: name, Limit: r.Limit, Window: r.Window}
}

// database is the store backend, its queue, and what operators need of
// it besides the store.Store interface.
type database struct {
	store.Store
	queue   jobs.Queue
	dir     string                                                // of its files: the disk check and metrics
	stats   func() metrics.DBStats                                // for metrics
	explain func(ctx context.Context, sql string) (string, error) // for the slow-query log
	checks  []ops.Check                                           // its own, besides Ping
}

// openModerator loads the perceptual-hash blocklist; without one every
// image passes moderation.
func openModerator(cfg config.Config) (moderation.Moderator, error) {
	var blocked []uint64
	if cfg.ModerationBlocklist != "" {
		f, err := os.Open(cfg.ModerationBlocklist)
		if err != nil {
			return nil, fmt.Errorf("ONEBOX_MODERATION_BLOCKLIST: %w", err)
		}
		defer f.Close()
		if blocked, err = phash.ParseBlocklist(f); err != nil {
			return nil, fmt.Errorf("ONEBOX_MODERATION_BLOCKLIST: %w", err)
		}
	}
	return phash.New(blocked, 0), nil
}

// newLogger is the logger of a short command, which writes every line at once.
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	log, _ := logging.New(w, logOptions(cfg, 0))
	return log
}

func logOptions(cfg config.Config, flushEvery time.Duration) logging.Options {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	return logging.Options{Level: level, Format: cfg.LogFormat, FlushEvery: flushEvery}
}

func version() string {
	v := "onebox (devel)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = "onebox " + bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v += " " + s.Value
			}
		}
		v += " " + bi.GoVersion
	}
	return v
}
