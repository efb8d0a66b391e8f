package dbcopy_test

import (
	"path/filepath"
	"testing"

	"onebox/dbcopy/dbcopytest"
	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
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
