package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// migrationFS holds the schema history, one file a version:
// migrations/NNNN_name.sql, numbered from 1 without gaps. Applied files
// are never edited; a change is a new file.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations") // sorted by file name
	if err != nil {
		return nil, fmt.Errorf("sqlite: read migrations: %w", err)
	}
	ms := make([]migration, 0, len(entries))
	for _, e := range entries {
		num, name, _ := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		version, err := strconv.Atoi(num)
		if err != nil || version != len(ms)+1 {
			return nil, fmt.Errorf("sqlite: migration %s: want version %04d", e.Name(), len(ms)+1)
		}
		body, err := fs.ReadFile(migrationFS, "migrations/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("sqlite: read migration: %w", err)
		}
		ms = append(ms, migration{version: version, name: name, sql: string(body)})
	}
	return ms, nil
}

const (
	createMigrationsTableSQL = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER NOT NULL PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT`
	appliedMigrationsSQL = `SELECT version FROM schema_migrations`
	recordMigrationSQL   = `INSERT INTO schema_migrations (version, name) VALUES (?, ?)`
)

// Migrate applies the embedded migrations the database lacks and records
// each in schema_migrations. It is safe to run again, and from several
// processes at once: everything happens in one BEGIN IMMEDIATE
// transaction, so a second migrator waits for the first (up to
// BusyTimeout, then store.ErrBusy) and then finds nothing left to do.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
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
		return err
	}
	for _, m := range applied {
		s.logger.InfoContext(ctx, "sqlite: applied migration", "version", m.version, "name", m.name)
	}
	return nil
}
