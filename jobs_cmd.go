package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"onebox/config"
	"onebox/jobs"
	jobpg "onebox/jobs/postgres"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/store/postgres"
	"onebox/store/sqlite"
)

// databasePath is the SQLite file ONEBOX_DATABASE_URL names (an error
// for any other backend: the commands that need a file say so).
func databasePath(cfg config.Config) (string, error) {
	u, err := databaseURL(cfg)
	if err != nil {
		return "", err
	}
	if u.Scheme != "sqlite" {
		return "", fmt.Errorf("%s: unsupported scheme %q", cfg.Name("ONEBOX_DATABASE_URL"), u.Scheme)
	}
	if u.Opaque != "" {
		return u.Opaque, nil
	}
	return u.Path, nil
}

// databaseURL is ONEBOX_DATABASE_URL parsed (Parse has checked it).
func databaseURL(cfg config.Config) (*url.URL, error) {
	return backendTable().store.url(cfg)
}

// isPostgres says whether ONEBOX_DATABASE_URL names PostgreSQL.
func isPostgres(cfg config.Config) (bool, error) {
	u, err := databaseURL(cfg)
	if err != nil {
		return false, err
	}
	return u.Scheme == "postgres" || u.Scheme == "postgresql", nil
}

// openPostgres opens the PostgreSQL database ONEBOX_DATABASE_URL names
// for a command, without migrating it, on a pool of two.
func openPostgres(ctx context.Context, cfg config.Config, log *slog.Logger) (*postgres.Store, error) {
	st, err := postgres.New(ctx, postgres.Options{URL: cfg.DatabaseURL, MaxConns: 2, SkipMigrate: true, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Name("ONEBOX_DATABASE_URL"), err)
	}
	return st, nil
}

// migrateCommand is `onebox migrate`: it creates the database if it is
// missing (SQLite; a PostgreSQL database must exist, the schema is
// made in it), applies the migrations it lacks and prints their names.
func migrateCommand(ctx context.Context, cfg config.Config, stdout io.Writer, log *slog.Logger) error {
	pg, err := isPostgres(cfg)
	if err != nil {
		return err
	}
	var where string
	var apply func(context.Context) ([]string, error)
	if pg {
		st, err := openPostgres(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer st.Close()
		where, apply = config.Redact(cfg.DatabaseURL), st.Apply
	} else {
		path, err := databasePath(cfg)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return fmt.Errorf("%s: %w", cfg.Name("ONEBOX_DATABASE_URL"), err)
		}
		st, err := sqlite.New(ctx, sqlite.Options{Path: path, ReadConns: 1, SkipMigrate: true, Logger: log})
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.Name("ONEBOX_DATABASE_URL"), err)
		}
		defer st.Close()
		where, apply = path, st.Apply
	}
	applied, err := apply(ctx)
	if err != nil {
		return fmt.Errorf("migrating %s: %w", where, err)
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "%s: up to date\n", where)
	}
	for _, name := range applied {
		fmt.Fprintf(stdout, "%s: applied %s\n", where, name)
	}
	return nil
}

// openQueue opens the job queue of an existing, migrated database
// without changing it: a mistyped path must not leave an empty
// database behind, nor a command meant to look migrate one.
func openQueue(ctx context.Context, cfg config.Config, log *slog.Logger) (jobs.Inspector, func() error, error) {
	if cfg.QueueURL != "" {
		// An external broker holds the jobs and their dead letters; the
		// store's table holds only what the relay has not yet moved.
		q, nc, err := openNATSQueue(ctx, cfg, log)
		if err != nil {
			return nil, nil, err
		}
		return q, func() error { nc.Close(); return nil }, nil
	}
	pg, err := isPostgres(cfg)
	if err != nil {
		return nil, nil, err
	}
	if pg {
		st, err := openPostgres(ctx, cfg, log)
		if err != nil {
			return nil, nil, err
		}
		if err := current(ctx, st, config.Redact(cfg.DatabaseURL)); err != nil {
			return nil, nil, errors.Join(err, st.Close())
		}
		return st.Queue(jobpg.Options{Logger: log}), st.Close, nil
	}
	path, err := databasePath(cfg)
	if err != nil {
		return nil, nil, err
	}
	st, err := sqlite.New(ctx, sqlite.Options{Path: path, ReadConns: 1, NoCreate: true, SkipMigrate: true, Logger: log})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("no database at %s (set ONEBOX_DATA_DIR or -data-dir, or ONEBOX_DATABASE_URL or -database-url, to the instance's; onebox migrate creates one)", path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := current(ctx, st, path); err != nil {
		return nil, nil, errors.Join(err, st.Close())
	}
	return st.Queue(jobsqlite.Options{Logger: log}), st.Close, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// current fails unless the database at where has every migration.
func current(ctx context.Context, db interface {
	Pending(context.Context) ([]string, error)
}, where string) error {
	pending, err := db.Pending(ctx)
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		return fmt.Errorf("the database at %s lacks migrations %s (onebox migrate applies them)", where, strings.Join(pending, ", "))
	}
	return nil
}

// jobsFlags are the flags of onebox jobs.
type jobsFlags struct {
	all           bool   // retry -all
	kind, errText string // dead and retry -kind, -error
}

// jobsCommand is `onebox jobs stats|dead|retry ID…|retry -all|retry
// -kind K -error TEXT`, run against the database directly, so it works
// while the server is down.
func jobsCommand(ctx context.Context, cfg config.Config, args []string, jf jobsFlags, stdout, stderr io.Writer, log *slog.Logger) error {
	const usage = "usage: onebox jobs stats | dead [-kind K] [-error TEXT] | retry ID... | retry -kind K -error TEXT | retry -all (see onebox jobs --help)"
	if len(args) == 0 {
		return errors.New(usage)
	}
	filtered := jf.kind != "" || jf.errText != ""
	switch verb := args[0]; {
	case verb != "stats" && verb != "dead" && verb != "retry":
		return fmt.Errorf("unknown jobs command %q (want stats, dead or retry)", verb)
	case verb != "retry" && len(args) > 1, verb != "retry" && jf.all, verb == "stats" && filtered:
		return errors.New(usage)
	case verb == "retry" && btoi(len(args) > 1)+btoi(jf.all)+btoi(filtered) != 1:
		return errors.New("usage: onebox jobs retry ID... | retry -kind K -error TEXT | retry -all")
	}
	f := jobs.DeadFilter{Kind: jf.kind, Error: jf.errText}
	if len(args) > 1 {
		f.IDs = args[1:]
	}
	q, closeDB, err := openQueue(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeDB()
	switch args[0] {
	case "stats":
		s, err := q.Stats(ctx)
		if err != nil {
			return err
		}
		if len(s.Kinds) == 0 {
			_, err := fmt.Fprintln(stdout, "no jobs")
			return err
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "KIND\tQUEUED\tIN FLIGHT\tDEAD\tOLDEST")
		for _, kind := range slices.Sorted(maps.Keys(s.Kinds)) {
			k := s.Kinds[kind]
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\n", kind, k.Queued, k.InFlight, k.Dead, k.OldestAge.Round(time.Millisecond))
		}
		return w.Flush()
	case "dead":
		dead, err := q.Dead(ctx, f, 1000)
		if err != nil {
			return err
		}
		if len(dead) == 0 { // stdout stays JSON lines: none
			fmt.Fprintln(stderr, "no jobs")
			return nil
		}
		enc := json.NewEncoder(stdout)
		for _, d := range dead {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	n, err := q.Redrive(ctx, f) // the zero filter (-all): every dead job
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d job(s) back in the queue\n", n)
	return nil
}
