package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/stdlib"

	jobpg "onebox/jobs/postgres"
	"onebox/store/internal/sqlutil"
)

// migrationFS holds the schema history that is ours, one file a
// version: migrations/NNNN_name.sql, numbered as store/sqlite's are, so
// one version is one change on both databases. Applied migrations are
// never edited; a change is a new version.
//
// The runner is onebox's own (sqlutil, shared with store/sqlite), not
// github.com/pressly/goose/v3: a migration here is SQL text run in a
// transaction with its record in schema_migrations, two of them exported
// by jobs/postgres, under the advisory lock below. goose would add a
// dependency and its own version table to take over, and nothing these
// migrations need.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// goMigrations are the versions whose SQL another package owns and
// exports. Their text must stay as it was when applied, like a file's.
var goMigrations = []sqlutil.Migration{
	// The job queue lives in this database, so a job commits with the row
	// it belongs to. jobpg.Schema is idempotent.
	{Version: 3, Name: "jobs", SQL: jobpg.Schema},
	// Fair queueing: each job's key and turn (jobs.Message.FairKey).
	{Version: 5, Name: "jobs_fair", SQL: jobpg.FairSchema},
}

// migrations returns the embedded and the Go-supplied migrations in
// version order, checked by sqlutil.LoadMigrations.
func migrations() ([]sqlutil.Migration, error) {
	ms, err := sqlutil.LoadMigrations(migrationFS, goMigrations)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return ms, nil
}

const (
	// The lock is keyed by the schema migrated, so migrations of
	// different schemas of one database (tests) do not wait on each other.
	migrateLockSQL   = `select pg_advisory_lock(hashtextextended('onebox.migrate:' || current_schema(), 0))`
	migrateUnlockSQL = `select pg_advisory_unlock(hashtextextended('onebox.migrate:' || current_schema(), 0))`

	createMigrationsTableSQL = `create table if not exists schema_migrations (
	version    integer not null primary key,
	name       text not null,
	applied_at timestamptz not null default now()
)`
	appliedMigrationsSQL  = `select version from schema_migrations`
	hasMigrationsTableSQL = `select to_regclass('schema_migrations') is not null`
	recordMigrationSQL    = `insert into schema_migrations (version, name) values ($1, $2)`
)

// Migrate applies the migrations the database lacks and records each
// in schema_migrations. It is safe to run again, and from several
// processes at once: a session-level advisory lock, held on one
// connection around the whole migration, makes a second migrator wait
// for the first and then find nothing left to do.
func (s *Store) Migrate(ctx context.Context) error {
	_, err := s.Apply(ctx)
	return err
}

// Apply is Migrate, returning the names (NNNN_name) of the migrations
// it applied: none when the database was up to date.
//
// Each migration runs in a transaction of its own with its record, so
// one that fails leaves the versions before it applied. The lock is a
// session's rather than the transaction's because of that, and because
// DDL taken by a transaction-level lock would be released at its first
// commit.
func (s *Store) Apply(ctx context.Context) (names []string, err error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, translate("migrate_conn", err)
	}
	defer conn.Close()
	if err := s.observe(ctx, "migrate_lock", migrateLockSQL, func() error {
		_, err := conn.ExecContext(ctx, migrateLockSQL)
		return err
	}); err != nil {
		return nil, err
	}
	defer func() {
		// Not ctx: the lock must go even when ctx has ended. Should the
		// unlock fail, closing the connection releases the lock with it.
		uerr := s.observe(context.WithoutCancel(ctx), "migrate_unlock", migrateUnlockSQL, func() error {
			_, err := conn.ExecContext(context.WithoutCancel(ctx), migrateUnlockSQL)
			return err
		})
		if uerr != nil {
			// Close the session itself: released as it is, it would go
			// back to the pool with the lock.
			_ = conn.Raw(func(dc any) error {
				return dc.(*stdlib.Conn).Conn().Close(context.WithoutCancel(ctx))
			})
			err = errors.Join(err, uerr)
		}
	}()

	if err := s.observe(ctx, "migrate_table", createMigrationsTableSQL, func() error {
		_, err := conn.ExecContext(ctx, createMigrationsTableSQL)
		return err
	}); err != nil {
		return nil, err
	}
	var versions []int
	if err := s.observe(ctx, "migrate_applied", appliedMigrationsSQL, func() error {
		rows, err := conn.QueryContext(ctx, appliedMigrationsSQL)
		if err != nil {
			return err
		}
		versions, err = sqlutil.Collect(rows, sqlutil.ScanValue[int])
		return err
	}); err != nil {
		return nil, err
	}
	for _, m := range sqlutil.Unapplied(ms, versions) {
		name := m.ID()
		err := s.observe(ctx, fmt.Sprintf("migrate_%04d", m.Version), m.SQL, func() error {
			tx, err := conn.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback() }()
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if _, err := tx.ExecContext(ctx, recordMigrationSQL, m.Version, m.Name); err != nil {
				return err
			}
			return tx.Commit()
		})
		if err != nil {
			return names, err
		}
		s.logger.InfoContext(ctx, "postgres: applied migration", "version", m.Version, "name", m.Name)
		names = append(names, name)
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
	has, err := readOne(ctx, s, onPrimary, "migrate_has_table", hasMigrationsTableSQL, sqlutil.ScanValue[bool])
	if err != nil {
		return nil, err
	}
	var versions []int
	if has {
		versions, err = queryAll(ctx, s, onPrimary, "migrate_applied", appliedMigrationsSQL, sqlutil.ScanValue[int])
		if err != nil {
			return nil, err
		}
	}
	var pending []string
	for _, m := range sqlutil.Unapplied(ms, versions) {
		pending = append(pending, m.ID())
	}
	return pending, nil
}
