// Command onebox is the whole service in one binary: `onebox serve` (the
// default) runs it, `migrate` applies the schema, `config` prints the
// effective configuration, `version` the build. This file parses config
// and wires backends by URL scheme; behaviour lives in the packages.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"onebox/app"
	"onebox/auth"
	"onebox/cache"
	cachememory "onebox/cache/memory"
	"onebox/config"
	"onebox/ops"
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
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	switch cmd {
	case "config":
		cfg.Print(stdout)
		return nil
	case "migrate":
		st, err := openStore(ctx, cfg, newLogger(cfg, stderr))
		if err != nil {
			return err
		}
		return st.Close() // opening migrates
	case "serve":
		return serve(ctx, cfg, newLogger(cfg, stdout))
	}
	return fmt.Errorf("unknown command %q (want serve, migrate, config or version)", cmd)
}

func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	st, err := openStore(ctx, cfg, log)
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
	health := ops.NewHealth(ops.Check{Name: "database", Timeout: time.Second, Probe: st.Ping})
	api := app.New(app.Deps{
		Store: st, Cache: c, Limiter: lim, Health: health, Logger: log,
		Hasher: auth.NewHasher(auth.DefaultParams, cfg.HashConcurrency),
	}, app.Options{
		CacheTTL: cfg.CacheTTL, CacheNegativeTTL: cfg.CacheNegative, ProfileSMaxAge: cfg.ProfileSMaxAge,
		SessionTTL: cfg.SessionTTL, RequestTimeout: cfg.RequestTimeout, MaxBodyBytes: cfg.MaxBodyBytes,
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
	servers = append(servers, ops.Server{Name: "public", Listener: ln, Server: httpServer(api.Handler(), cfg, log)})
	if cfg.AdminAddr != "" {
		aln, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("ONEBOX_ADMIN_ADDR: %w", err)
		}
		servers = append(servers, ops.Server{Name: "admin", Listener: aln, Server: httpServer(api.AdminHandler(), cfg, log)})
	}
	return ops.Run(ctx, servers, ops.RunOptions{
		Health: health, Logger: log, ShutdownDelay: cfg.ShutdownDelay, DrainTimeout: cfg.DrainTimeout,
	})
}

func httpServer(h http.Handler, cfg config.Config, log *slog.Logger) *http.Server {
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

// openStore picks the store backend by the URL's scheme.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, error) {
	u, err := config.BackendURL("ONEBOX_DATABASE_URL", cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "sqlite":
		path := u.Opaque
		if path == "" {
			path = u.Path
		}
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("ONEBOX_DATA_DIR: %w", err)
		}
		st, err := sqlite.New(ctx, sqlite.Options{Path: path, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("ONEBOX_DATABASE_URL: %w", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("ONEBOX_DATABASE_URL: unsupported scheme %q", u.Scheme)
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
