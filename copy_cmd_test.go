package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"onebox/dbcopy"
	"onebox/dbcopy/dbcopytest"
	"onebox/internal/pgtest"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/store/postgres"
	"onebox/store/sqlite"
)

// TestCopyCommandPostgres: onebox copy moves a seeded SQLite file into a
// PostgreSQL schema (migrating it) and back into a new SQLite file, each
// way saying every table agrees, with the same row counts at each end; a
// rerun inserts nothing; another database's copy onto it is refused and
// writes nothing; a PostgreSQL source without onebox's schema is
// refused and left without it.
func TestCopyCommandPostgres(t *testing.T) {
	t.Parallel()
	pgURL := pgtest.Schema(t, "copy command")
	dir := t.TempDir()
	src, back := filepath.Join(dir, "src.db"), filepath.Join(dir, "back.db")
	seedFile(t, src)

	copyOK := func(from, to string) string {
		t.Helper()
		out, errOut, err := runCLI(t, []string{"copy", "-from", from, "-to", to}, nil)
		if err != nil || !strings.Contains(out, "every table's rows and checksum agree") {
			t.Fatalf("copy %s → %s: %v\nstdout %s\nstderr %s", from, to, err, out, errOut)
		}
		return out
	}
	copyOK("sqlite:"+src, pgURL)
	// Rerun: each table's line says 0 inserted.
	out := copyOK("sqlite:"+src, pgURL)
	zero := regexp.MustCompile(`(?m)^\S+\s+\d+ rows,\s+0 inserted by this run`)
	if n := len(zero.FindAllString(out, -1)); n != len(dbcopy.Tables()) {
		t.Errorf("rerun: %d tables with 0 inserted, want %d:\n%s", n, len(dbcopy.Tables()), out)
	}
	copyOK(pgURL, "sqlite:"+back)

	// Another database's rows are refused, and the schema keeps the
	// first copy's alone (the counts below).
	other := filepath.Join(dir, "other.db")
	seedFile(t, other)
	_, _, err := runCLI(t, []string{"copy", "-from", "sqlite:" + other, "-to", pgURL}, nil)
	if err == nil || !strings.Contains(err.Error(), "users has key [") || !strings.Contains(err.Error(), "nothing was written") {
		t.Errorf("copy of another database onto a copy: %v, want it refused, naming users and a key", err)
	}

	// Equal row counts at every end, and rows in every table.
	ends := map[string]dbcopy.Database{}
	for _, path := range []string{src, back} {
		s, err := sqlite.New(t.Context(), sqlite.Options{Path: path, NoCreate: true, SkipMigrate: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ends[path] = s
	}
	pg, err := postgres.New(t.Context(), postgres.Options{URL: pgURL, SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	ends["postgres"] = pg
	for _, tb := range dbcopy.Tables() {
		counts := map[string]int64{}
		for name, db := range ends {
			if counts[name], err = db.CountRows(t.Context(), tb); err != nil {
				t.Fatal(err)
			}
		}
		if counts[src] == 0 || counts[back] != counts[src] || counts["postgres"] != counts[src] {
			t.Errorf("%s: rows %v, want the source's at every end, and some", tb.Name, counts)
		}
	}

	// A source without onebox's schema is refused, and not migrated.
	empty := pgtest.Schema(t, "copy command")
	_, _, err = runCLI(t, []string{"copy", "-from", empty, "-to", "sqlite:" + filepath.Join(dir, "never.db")}, nil)
	if err == nil || !strings.Contains(err.Error(), "lacks onebox's schema (migrations 0001_init") {
		t.Errorf("copy from an empty schema: %v, want it refused for lacking the schema", err)
	}
	e, err := postgres.New(t.Context(), postgres.Options{URL: empty, SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if pending, err := e.Pending(t.Context()); err != nil || len(pending) == 0 || pending[0] != "0001_init" {
		t.Errorf("after the refused copy, the source's pending migrations are %v (%v), want all", pending, err)
	}
}

// seedFile creates a SQLite database at path and seeds it.
func seedFile(t *testing.T, path string) {
	t.Helper()
	st, err := sqlite.New(t.Context(), sqlite.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	dbcopytest.Seed(t, st, st.Queue(jobsqlite.Options{}))
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}
