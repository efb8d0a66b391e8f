package dbcopy_test

import (
	"path/filepath"
	"testing"

	"onebox/dbcopy/dbcopytest"
	"onebox/internal/pgtest"
	"onebox/jobs"
	jobpg "onebox/jobs/postgres"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/store/postgres"
	"onebox/store/sqlite"
)

func sqliteBackend(t *testing.T) (dbcopytest.Database, jobs.Queue) {
	t.Helper()
	st, err := sqlite.New(t.Context(), sqlite.Options{Path: filepath.Join(t.TempDir(), "onebox.db"), ReadConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, st.Queue(jobsqlite.Options{})
}

func TestSQLiteToSQLite(t *testing.T) {
	t.Parallel()
	dbcopytest.Run(t, sqliteBackend, sqliteBackend)
}

func postgresBackend(t *testing.T) (dbcopytest.Database, jobs.Queue) {
	t.Helper()
	st, err := postgres.New(t.Context(), postgres.Options{URL: pgtest.Schema(t, "copy")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, st.Queue(jobpg.Options{})
}

// TestSQLiteToPostgres copies SQLite to PostgreSQL and back to SQLite.
func TestSQLiteToPostgres(t *testing.T) {
	t.Parallel()
	dbcopytest.Run(t, sqliteBackend, postgresBackend)
}

// TestPostgresToSQLite copies PostgreSQL to SQLite and back to PostgreSQL.
func TestPostgresToSQLite(t *testing.T) {
	t.Parallel()
	dbcopytest.Run(t, postgresBackend, sqliteBackend)
}
