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
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"onebox/config"
	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/store/sqlite"
)

// databasePath is the SQLite file ONEBOX_DATABASE_URL names.
func databasePath(cfg config.Config) (string, error) {
	u, err := config.BackendURL(cfg.Name("ONEBOX_DATABASE_URL"), cfg.DatabaseURL)
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

// migrateCommand is `onebox migrate`: it creates the database if it is
// missing, applies the migrations it lacks and prints their names.
func migrateCommand(ctx context.Context, cfg config.Config, stdout io.Writer, log *slog.Logger) error {
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
	applied, err := st.Apply(ctx)
	if err != nil {
		return fmt.Errorf("migrating %s: %w", path, err)
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "%s: up to date\n", path)
	}
	for _, name := range applied {
		fmt.Fprintf(stdout, "%s: applied %s\n", path, name)
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
		q, closeNATS, err := openNATSQueue(ctx, cfg, log)
		if err != nil {
			return nil, nil, err
		}
		return q, func() error { closeNATS(); return nil }, nil
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
	pending, err := st.Pending(ctx)
	if err == nil && len(pending) > 0 {
		err = fmt.Errorf("the database at %s lacks migrations %s (onebox migrate applies them)", path, strings.Join(pending, ", "))
	}
	if err != nil {
		return nil, nil, errors.Join(err, st.Close())
	}
	return st.Queue(jobsqlite.Options{Logger: log}), st.Close, nil
}

// jobsCommand is `onebox jobs stats|dead|retry ID…|retry -all`, run
// against the database directly, so it works while the server is down.
func jobsCommand(ctx context.Context, cfg config.Config, args []string, all bool, stdout, stderr io.Writer, log *slog.Logger) error {
	const usage = "usage: onebox jobs stats | dead | retry ID... | retry -all (see onebox jobs --help)"
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch verb := args[0]; {
	case verb != "stats" && verb != "dead" && verb != "retry":
		return fmt.Errorf("unknown jobs command %q (want stats, dead or retry)", verb)
	case verb != "retry" && len(args) > 1, verb != "retry" && all:
		return errors.New(usage)
	case verb == "retry" && (len(args) == 1) == !all:
		return errors.New("usage: onebox jobs retry ID... | retry -all")
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
		dead, err := q.Dead(ctx, 1000)
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
	n, err := q.Redrive(ctx, args[1:]...) // no IDs: every dead job
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d job(s) back in the queue\n", n)
	return nil
}
