package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"

	jobsqlite "onebox/jobs/sqlite"
	"onebox/store/internal/sqlutil"
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
var goMigrations = []sqlutil.Migration{
	// The job queue lives in this database, so a job commits with the row
	// it belongs to. jobsqlite.Schema is idempotent.
	{Version: 3, Name: "jobs", SQL: jobsqlite.Schema},
	// Fair queueing: each job's key and turn (jobs.Message.FairKey).
	{Version: 5, Name: "jobs_fair", SQL: jobsqlite.FairSchema},
	// The jobs whose turn is not 0, for Send's shortcut.
	{Version: 7, Name: "jobs_ranked", SQL: jobsqlite.RankedSchema},
	// A keyless job's turn in the INSERT; goqite's updated trigger gone.
	{Version: 8, Name: "jobs_turn", SQL: jobsqlite.TurnSchema},
}

// migrations returns the embedded and the Go-supplied migrations in
// version order, checked by sqlutil.LoadMigrations.
func migrations() ([]sqlutil.Migration, error) {
	ms, err := sqlutil.LoadMigrations(migrationFS, goMigrations)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
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
	var applied []sqlutil.Migration
	err = s.inTxAlone(ctx, "migrate", func(tx *sql.Tx) error {
		err := s.observeTx(ctx, tx, "migrate_table", createMigrationsTableSQL, func() error {
			_, err := tx.ExecContext(ctx, createMigrationsTableSQL)
			return err
		})
		if err != nil {
			return err
		}
		// Read inside the transaction: another process may have migrated
		// while this one waited for the lock.
		var versions []int
		err = s.observeTx(ctx, tx, "migrate_applied", appliedMigrationsSQL, func() error {
			rows, err := tx.QueryContext(ctx, appliedMigrationsSQL)
			if err != nil {
				return err
			}
			versions, err = sqlutil.Collect(rows, sqlutil.ScanValue[int])
			return err
		})
		if err != nil {
			return err
		}
		for _, m := range sqlutil.Unapplied(ms, versions) {
			err := s.observeTx(ctx, tx, fmt.Sprintf("migrate_%04d", m.Version), m.SQL, func() error {
				if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, recordMigrationSQL, m.Version, m.Name)
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
		s.logger.InfoContext(ctx, "sqlite: applied migration", "version", m.Version, "name", m.Name)
		names = append(names, m.ID())
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
	var versions []int
	if tables > 0 {
		err = s.observe(ctx, "migrate_applied", appliedMigrationsSQL, func() error {
			rows, err := s.reader.db.QueryContext(ctx, appliedMigrationsSQL)
			if err != nil {
				return err
			}
			versions, err = sqlutil.Collect(rows, sqlutil.ScanValue[int])
			return err
		})
		if err != nil {
			return nil, translate("migrate_applied", err)
		}
	}
	var pending []string
	for _, m := range sqlutil.Unapplied(ms, versions) {
		pending = append(pending, m.ID())
	}
	return pending, nil
}
