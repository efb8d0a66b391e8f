package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"onebox/store"
	"onebox/store/internal/sqlutil"
)

// Snapshot writes a consistent copy of the database to path, which must
// not exist, with VACUUM INTO on a connection of its own: in WAL mode it
// reads one snapshot while writers go on, so it works while the service
// runs and never takes the write lock. The readers cannot run it: their
// query_only refuses VACUUM INTO, which counts as a write. The copy is a
// compact rollback-journal database, as if the database had been closed
// at that instant.
func (s *Store) Snapshot(ctx context.Context, path string) error {
	const query = `VACUUM INTO ?`
	return s.observe(ctx, "snapshot", query, func() error {
		db, err := sql.Open("sqlite", s.snapshotDSN)
		if err != nil {
			return err
		}
		_, err = db.ExecContext(ctx, query, path)
		return errors.Join(err, db.Close())
	})
}

// IntegrityCheck runs PRAGMA integrity_check and returns nil when it
// says "ok", or an error that quotes (the first lines of) what it found.
func (s *Store) IntegrityCheck(ctx context.Context) error {
	const query = `PRAGMA integrity_check(20)`
	problems, err := s.readStrings(ctx, "integrity_check", query)
	if err != nil {
		return fmt.Errorf("sqlite: integrity check: %w", err)
	}
	if len(problems) == 1 && problems[0] == "ok" {
		return nil
	}
	return fmt.Errorf("sqlite: integrity check failed: %s", strings.Join(problems, "; "))
}

// RowCounts counts the rows of every table of the database, SQLite's
// own (sqlite_*) aside, by table name.
func (s *Store) RowCounts(ctx context.Context) (map[string]int64, error) {
	const tablesSQL = `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`
	tables, err := s.readStrings(ctx, "tables", tablesSQL)
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int64, len(tables))
	for _, t := range tables {
		// The name comes from sqlite_schema, not from a caller; quoting
		// it as an identifier is still what makes any name safe.
		query := `SELECT count(*) FROM ` + quoteIdent(t)
		var n int64
		if err := s.observe(ctx, "count_rows", query, func() error {
			return s.reader.db.QueryRowContext(ctx, query).Scan(&n)
		}); err != nil {
			return nil, fmt.Errorf("counting %s: %w", t, err)
		}
		counts[t] = n
	}
	return counts, nil
}

// MediaKeys lists, sorted and without repeats, every media key the
// database references: the original of every photo (a processing photo
// is made from it, and a ready one can be made again from it) and the
// variants of every photo. One statement reads them all, so they belong
// to one state of the database.
func (s *Store) MediaKeys(ctx context.Context) ([]string, error) {
	const query = `SELECT original_key, variants FROM photos`
	var keys []string
	err := s.observe(ctx, "media_keys", query, func() error {
		rows, err := s.reader.db.QueryContext(ctx, query)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var original string
			var variants []store.Variant
			if err := rows.Scan(&original, jsonVariants{&variants}); err != nil {
				return err
			}
			keys = append(keys, sqlutil.PhotoKeys(original, variants)...)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

// readStrings runs query, named name for the query hook, on the reader
// pool and returns its one text column.
func (s *Store) readStrings(ctx context.Context, name, query string) ([]string, error) {
	var out []string
	err := s.observe(ctx, name, query, func() error {
		rows, err := s.reader.db.QueryContext(ctx, query)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	return out, err
}
