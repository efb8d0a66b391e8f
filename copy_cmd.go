package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"onebox/config"
	"onebox/dbcopy"
	"onebox/store/postgres"
	"onebox/store/sqlite"
)

// copyEnd is a database that `onebox copy` reads or writes.
type copyEnd interface {
	dbcopy.Database
	Close() error
}

// copyCommand is `onebox copy -from URL -to URL`: every table from one
// database to another, checked by count and checksum. The destination is
// created and migrated if need be; the source must exist.
func copyCommand(ctx context.Context, from, to string, stdout io.Writer, log *slog.Logger) error {
	if from == "" || to == "" {
		return errors.New("copy: -from URL and -to URL are both required (see onebox copy --help)")
	}
	if from == to {
		return errors.New("copy: -from and -to name the same database")
	}
	start := time.Now()
	src, err := openCopyEnd(ctx, "-from", from, false, log)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := openCopyEnd(ctx, "-to", to, true, log)
	if err != nil {
		return err
	}
	defer dst.Close()
	reports, err := dbcopy.Copy(ctx, src, dst, dbcopy.Options{Batch: 1000})
	for _, r := range reports {
		if r.Checksum == "" {
			fmt.Fprintf(stdout, "%-18s copied, %d rows inserted by this run\n", r.Name, r.Inserted)
			continue
		}
		fmt.Fprintf(stdout, "%-18s %8d rows, %8d inserted by this run, sha256 %.16s… on both\n", r.Name, r.Rows, r.Inserted, r.Checksum)
	}
	if errors.Is(err, dbcopy.ErrForeign) {
		return fmt.Errorf("copy: %w; nothing was written: copy into an empty database, or into an earlier copy of this source", err)
	}
	if errors.Is(err, dbcopy.ErrMismatch) {
		return fmt.Errorf("copy: %w; the source changed during the copy: stop writes to it and run the copy again", err)
	}
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	fmt.Fprintf(stdout, "copied %s to %s: every table's rows and checksum agree (%s)\n", config.Redact(from), config.Redact(to), time.Since(start).Round(time.Millisecond))
	return nil
}

// openCopyEnd opens the database a copy URL names: sqlite:PATH or
// postgres://… (postgresql://…). Only the destination may be created or
// migrated; a PostgreSQL source must hold onebox's current schema
// already, since a copy reads every table by name.
func openCopyEnd(ctx context.Context, flagName, rawURL string, create bool, log *slog.Logger) (copyEnd, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("copy: %s: malformed URL: %w", flagName, err)
	}
	switch u.Scheme {
	case "sqlite":
		path := u.Opaque
		if path == "" {
			path = u.Path
		}
		if create {
			if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
				return nil, fmt.Errorf("copy: %s: %w", flagName, err)
			}
		}
		st, err := sqlite.New(ctx, sqlite.Options{Path: path, ReadConns: 2, NoCreate: !create, Logger: log})
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("copy: %s: no database at %s", flagName, path)
		}
		if err != nil {
			return nil, fmt.Errorf("copy: %s: %w", flagName, err)
		}
		return st, nil
	case "postgres", "postgresql":
		// Two connections: a copy reads and writes one batch at a time.
		st, err := postgres.New(ctx, postgres.Options{URL: rawURL, MaxConns: 2, SkipMigrate: !create, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("copy: %s %s: %w", flagName, config.Redact(rawURL), err)
		}
		if create {
			return st, nil
		}
		pending, err := st.Pending(ctx)
		if err == nil && len(pending) > 0 {
			err = fmt.Errorf("lacks onebox's schema (migrations %s): is the URL (or its search_path) the instance's? A source is never migrated; onebox migrate with ONEBOX_DATABASE_URL set to it applies them", strings.Join(pending, ", "))
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("copy: %s %s: %w", flagName, config.Redact(rawURL), err), st.Close())
		}
		return st, nil
	}
	return nil, fmt.Errorf("copy: %s: unsupported scheme %q (want sqlite:PATH or postgres://…)", flagName, u.Scheme)
}
