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
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"onebox/app"
	"onebox/auth"
	"onebox/cache"
	cachememory "onebox/cache/memory"
	"onebox/config"
	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/media"
	medialocal "onebox/media/local"
	"onebox/moderation"
	"onebox/moderation/phash"
	"onebox/notify"
	notifymemory "onebox/notify/memory"
	"onebox/ops"
	"onebox/pipeline"
	"onebox/ratelimit"
	limitmemory "onebox/ratelimit/memory"
	"onebox/store"
	"onebox/store/sqlite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "onebox:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	if cmd == "version" {
		fmt.Fprintln(stdout, version())
		return nil
	}
	var sub []string // a subcommand's own arguments, after the flags
	if cmd == "jobs" {
		if i := slices.IndexFunc(args, func(a string) bool { return !strings.HasPrefix(a, "-") }); i >= 0 {
			args, sub = args[:i], args[i:]
		}
	}
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	switch cmd {
	case "config":
		cfg.Print(stdout)
		return nil
	case "migrate":
		st, _, err := openStore(ctx, cfg, newLogger(cfg, stderr))
		if err != nil {
			return err
		}
		return st.Close() // opening migrates
	case "jobs":
		return jobsCommand(ctx, cfg, sub, stdout, newLogger(cfg, stderr))
	case "serve":
		return serve(ctx, cfg, newLogger(cfg, stdout))
	}
	return fmt.Errorf("unknown command %q (want serve, migrate, config or version)", cmd)
}

func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	st, queue, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	c, err := openCache(cfg)
	if err != nil {
		return err
	}
	lim, err := openLimiter(cfg)
	if err != nil {
		return err
	}
	med, err := openMedia(cfg)
	if err != nil {
		return err
	}
	hub, err := openHub(cfg)
	if err != nil {
		return err
	}
	mod, err := openModerator(cfg)
	if err != nil {
		return err
	}
	pipe := pipeline.New(st, med, mod, hub, log, pipeline.Options{
		MaxPixels: cfg.MaxPixels, JPEGQuality: cfg.JPEGQuality, DecodeMemory: cfg.DecodeMemory,
	})
	runner := jobs.NewRunner(queue, jobs.RunnerOptions{Logger: log, DrainTimeout: cfg.DrainTimeout, Visibility: cfg.JobVisibility})
	runner.Register(pipeline.KindProcess, pipe.Process, jobs.KindOptions{Concurrency: cfg.PhotoWorkers, MaxAttempts: 5, Timeout: 5 * time.Minute})
	runner.Register(pipeline.KindCleanup, pipe.Cleanup, jobs.KindOptions{Concurrency: 2, MaxAttempts: 10, Timeout: time.Minute})

	health := ops.NewHealth(
		ops.Check{Name: "database", Timeout: time.Second, Probe: st.Ping},
		ops.Check{Name: "queue", Timeout: time.Second, Probe: func(ctx context.Context) error { _, err := queue.Stats(ctx); return err }},
	)
	api := app.New(app.Deps{
		Store: st, Cache: c, Limiter: lim, Health: health, Logger: log, Media: med, Hub: hub, Queue: queue, Jobs: runner,
		Hasher: auth.NewHasher(auth.DefaultParams, cfg.HashConcurrency),
	}, app.Options{
		CacheTTL: cfg.CacheTTL, CacheNegativeTTL: cfg.CacheNegative, ProfileSMaxAge: cfg.ProfileSMaxAge,
		SessionTTL: cfg.SessionTTL, RequestTimeout: cfg.RequestTimeout, MaxBodyBytes: cfg.MaxBodyBytes,
		MaxUploadBytes: cfg.MaxUploadBytes, MaxPixels: cfg.MaxPixels, UploadTimeout: cfg.UploadTimeout,
		TrustedProxies: cfg.TrustedProxies, AccessLog: cfg.AccessLog,
		Policies: app.Policies{
			API:        policy("api", cfg.RateAPI),
			Auth:       policy("auth", cfg.RateAuth),
			AuthHandle: policy("auth-handle", cfg.RateAuthHandle),
			Upload:     policy("upload", cfg.RateUpload),
		},
	})

	servers := []ops.Server{}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("ONEBOX_ADDR: %w", err)
	}
	public := httpServer(api.Handler(), log)
	public.RegisterOnShutdown(api.Close) // event streams end so the drain can finish
	servers = append(servers, ops.Server{Name: "public", Listener: ln, Server: public})
	if cfg.AdminAddr != "" {
		aln, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("ONEBOX_ADMIN_ADDR: %w", err)
		}
		servers = append(servers, ops.Server{Name: "admin", Listener: aln, Server: httpServer(api.AdminHandler(), log)})
	}
	// The workers stop taking jobs on the same signal and finish what they
	// run within the drain time; the rest waits in the queue for the next
	// start.
	workers := make(chan error, 1)
	go func() { workers <- runner.Run(ctx) }()
	err = ops.Run(ctx, servers, ops.RunOptions{
		Health: health, Logger: log, ShutdownDelay: cfg.ShutdownDelay, DrainTimeout: cfg.DrainTimeout,
	})
	return errors.Join(err, <-workers)
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

// openStore picks the store backend by the URL's scheme, and the queue:
// by default the store's own database, so a job commits with its row.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, jobs.Queue, error) {
	u, err := config.BackendURL("ONEBOX_DATABASE_URL", cfg.DatabaseURL)
	if err != nil {
		return nil, nil, err
	}
	switch u.Scheme {
	case "sqlite":
		path := u.Opaque
		if path == "" {
			path = u.Path
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, nil, fmt.Errorf("ONEBOX_DATABASE_URL: %w", err)
		}
		st, err := sqlite.New(ctx, sqlite.Options{Path: path, Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("ONEBOX_DATABASE_URL: %w", err)
		}
		return st, st.Queue(jobsqlite.Options{Logger: log}), nil
	}
	return nil, nil, fmt.Errorf("ONEBOX_DATABASE_URL: unsupported scheme %q", u.Scheme)
}

func openMedia(cfg config.Config) (media.Storage, error) {
	u, err := config.BackendURL("ONEBOX_MEDIA_URL", cfg.MediaURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "file":
		dir := u.Opaque
		if dir == "" {
			dir = u.Path
		}
		m, err := medialocal.New(dir)
		if err != nil {
			return nil, fmt.Errorf("ONEBOX_MEDIA_URL: %w", err)
		}
		return m, nil
	}
	return nil, fmt.Errorf("ONEBOX_MEDIA_URL: unsupported scheme %q", u.Scheme)
}

func openHub(cfg config.Config) (notify.Hub, error) {
	u, err := config.BackendURL("ONEBOX_NOTIFY_URL", cfg.NotifyURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "memory":
		return notifymemory.New(), nil
	}
	return nil, fmt.Errorf("ONEBOX_NOTIFY_URL: unsupported scheme %q", u.Scheme)
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

// openCache picks the cache backend; nil means caching is off.
func openCache(cfg config.Config) (cache.Cache, error) {
	u, err := config.BackendURL("ONEBOX_CACHE_URL", cfg.CacheURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "memory":
		return cachememory.New(cachememory.Options{MaxBytes: cfg.CacheMaxBytes}), nil
	case "none":
		return nil, nil
	}
	return nil, fmt.Errorf("ONEBOX_CACHE_URL: unsupported scheme %q", u.Scheme)
}

func openLimiter(cfg config.Config) (ratelimit.Limiter, error) {
	u, err := config.BackendURL("ONEBOX_LIMITER_URL", cfg.LimiterURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "memory":
		return limitmemory.New(limitmemory.Options{}), nil
	}
	return nil, fmt.Errorf("ONEBOX_LIMITER_URL: unsupported scheme %q", u.Scheme)
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
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
