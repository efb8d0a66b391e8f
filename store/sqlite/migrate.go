package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	jobsqlite "onebox/jobs/sqlite"
)

// migrationFS holds the schema history that is ours, one file a
// version: migrations/NNNN_name.sql. Applied migrations are never edited;
// a change is a new version.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// goMigrations are the versions whose SQL another package owns and
// exports, numbered in the same sequence as the files. Their text must
// stay as it was when applied, like a file's: when such a package changes
// its schema, it gets a new version here.
var goMigrations = []migration{
	// The job queue lives in this database, so a job commits with the row
	// it belongs to. jobsqlite.Schema is idempotent.
	{version: 3, name: "jobs", sql: jobsqlite.Schema},
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded and the Go-supplied migrations in
// version order.
func migrations() ([]migration, error) {
	return loadMigrations(migrationFS, goMigrations)
}

// loadMigrations merges the files migrations/NNNN_name.sql of fsys with
// goms in version order, checking the versions run from 1 without gaps
// or duplicates and each has SQL.
func loadMigrations(fsys fs.FS, goms []migration) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, fmt.Errorf("sqlite: read migrations: %w", err)
	}
	ms := slices.Clone(goms)
	for _, e := range entries {
		num, name, _ := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		version, err := strconv.Atoi(num)
		if err != nil || num != fmt.Sprintf("%04d", version) {
			return nil, fmt.Errorf("sqlite: migration %s: want a name NNNN_name.sql", e.Name())
		}
		body, err := fs.ReadFile(fsys, "migrations/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("sqlite: read migration: %w", err)
		}
		ms = append(ms, migration{version: version, name: name, sql: string(body)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return cmp.Compare(a.version, b.version) })
	for i, m := range ms {
		if i > 0 && m.version == ms[i-1].version {
			return nil, fmt.Errorf("sqlite: migrations %04d_%s and %04d_%s share a version", m.version, ms[i-1].name, m.version, m.name)
		}
		if m.version != i+1 {
			return nil, fmt.Errorf("sqlite: migration %04d_%s: want version %04d", m.version, m.name, i+1)
		}
		if strings.TrimSpace(m.sql) == "" {
			return nil, fmt.Errorf("sqlite: migration %04d_%s: no SQL", m.version, m.name)
		}
	}
	return ms, nil
}

const (
	createMigrationsTableSQL = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER NOT NULL PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT`
	appliedMigrationsSQL  = `SELECT version FROM schema_migrations`
	hasMigrationsTableSQL = `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'`
	recordMigrationSQL    = `INSERT INTO schema_migrations (version, name) VALUES (?, ?)`
)

// Migrate applies the migrations the database lacks and records
// each in schema_migrations. It is safe to run again, and from several
// processes at once: everything happens in one BEGIN IMMEDIATE
// transaction, so a second migrator waits for the first (up to
// BusyTimeout, then store.ErrBusy) and then finds nothing left to do.
func (s *Store) Migrate(ctx context.Context) error {
	_, err := s.Apply(ctx)
	return err
}

// Apply is Migrate, returning the names (NNNN_name) of the migrations
// it applied: none when the database was up to date.
func (s *Store) Apply(ctx context.Context) ([]string, error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	var applied []migration
	err = s.inTx(ctx, "migrate", func(tx *sql.Tx) error {
		err := s.observe(ctx, "migrate_table", createMigrationsTableSQL, func() error {
			_, err := tx.ExecContext(ctx, createMigrationsTableSQL)
			return err
		})
		if err != nil {
			return err
		}
		// Read inside the transaction: another process may have migrated
		// while this one waited for the lock.
		var versions []int
		err = s.observe(ctx, "migrate_applied", appliedMigrationsSQL, func() error {
			rows, err := tx.QueryContext(ctx, appliedMigrationsSQL)
			if err != nil {
				return err
			}
			versions, err = collect(rows, scanValue[int])
			return err
		})
		if err != nil {
			return err
		}
		done := make(map[int]bool, len(versions))
		for _, v := range versions {
			done[v] = true
		}
		for _, m := range ms {
			if done[m.version] {
				continue
			}
			err := s.observe(ctx, fmt.Sprintf("migrate_%04d", m.version), m.sql, func() error {
				if _, err := tx.ExecContext(ctx, m.sql); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, recordMigrationSQL, m.version, m.name)
				return err
			})
			if err != nil {
				return err
			}
			applied = append(applied, m)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(applied))
	for _, m := range applied {
		s.logger.InfoContext(ctx, "sqlite: applied migration", "version", m.version, "name", m.name)
		names = append(names, fmt.Sprintf("%04d_%s", m.version, m.name))
	}
	return names, nil
}

// Pending returns the names (NNNN_name) of the migrations the database
// lacks, without applying them: a command that must not change the
// schema checks it is current with this.
func (s *Store) Pending(ctx context.Context) ([]string, error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	var tables int
	err = s.observe(ctx, "migrate_has_table", hasMigrationsTableSQL, func() error {
		return s.reader.db.QueryRowContext(ctx, hasMigrationsTableSQL).Scan(&tables)
	})
	if err != nil {
		return nil, translate("migrate_has_table", err)
	}
	done := map[int]bool{}
	if tables > 0 {
		var versions []int
		err = s.observe(ctx, "migrate_applied", appliedMigrationsSQL, func() error {
			rows, err := s.reader.db.QueryContext(ctx, appliedMigrationsSQL)
			if err != nil {
				return err
			}
			versions, err = collect(rows, scanValue[int])
			return err
		})
		if err != nil {
			return nil, translate("migrate_applied", err)
		}
		for _, v := range versions {
			done[v] = true
		}
	}
	var pending []string
	for _, m := range ms {
		if !done[m.version] {
			pending = append(pending, fmt.Sprintf("%04d_%s", m.version, m.name))
		}
	}
	return pending, nil
}
