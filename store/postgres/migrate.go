package postgres

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/stdlib"

	jobpg "onebox/jobs/postgres"
)

// migrationFS holds the schema history that is ours, one file a
// version: migrations/NNNN_name.sql, numbered as store/sqlite's are, so
// one version is one change on both databases. Applied migrations are
// never edited; a change is a new version.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// goMigrations are the versions whose SQL another package owns and
// exports. Their text must stay as it was when applied, like a file's.
var goMigrations = []migration{
	// The job queue lives in this database, so a job commits with the row
	// it belongs to. jobpg.Schema is idempotent.
	{version: 3, name: "jobs", sql: jobpg.Schema},
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded and the Go-supplied migrations in
// version order, checking the versions run from 1 without gaps or
// duplicates and each has SQL.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("postgres: read migrations: %w", err)
	}
	ms := slices.Clone(goMigrations)
	for _, e := range entries {
		num, name, _ := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		version, err := strconv.Atoi(num)
		if err != nil || num != fmt.Sprintf("%04d", version) {
			return nil, fmt.Errorf("postgres: migration %s: want a name NNNN_name.sql", e.Name())
		}
		body, err := fs.ReadFile(migrationFS, "migrations/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("postgres: read migration: %w", err)
		}
		ms = append(ms, migration{version: version, name: name, sql: string(body)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return cmp.Compare(a.version, b.version) })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("postgres: migration %04d_%s: want version %04d", m.version, m.name, i+1)
		}
		if strings.TrimSpace(m.sql) == "" {
			return nil, fmt.Errorf("postgres: migration %04d_%s: no SQL", m.version, m.name)
		}
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
		versions, err = collect(rows, scanValue[int])
		return err
	}); err != nil {
		return nil, err
	}
	done := make(map[int]bool, len(versions))
	for _, v := range versions {
		done[v] = true
	}
	for _, m := range ms {
		if done[m.version] {
			continue
		}
		name := fmt.Sprintf("%04d_%s", m.version, m.name)
		err := s.observe(ctx, fmt.Sprintf("migrate_%04d", m.version), m.sql, func() error {
			tx, err := conn.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback() }()
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if _, err := tx.ExecContext(ctx, recordMigrationSQL, m.version, m.name); err != nil {
				return err
			}
			return tx.Commit()
		})
		if err != nil {
			return names, err
		}
		s.logger.InfoContext(ctx, "postgres: applied migration", "version", m.version, "name", m.name)
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
	has, err := readOne(ctx, s, onPrimary, "migrate_has_table", hasMigrationsTableSQL, scanValue[bool])
	if err != nil {
		return nil, err
	}
	done := map[int]bool{}
	if has {
		versions, err := queryAll(ctx, s, onPrimary, "migrate_applied", appliedMigrationsSQL, scanValue[int])
		if err != nil {
			return nil, err
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
