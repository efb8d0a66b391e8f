package dbcopy_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"onebox/dbcopy"
	"onebox/dbcopy/dbcopytest"
	"onebox/internal/pgtest"
	"onebox/jobs"
	jobpg "onebox/jobs/postgres"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/store/postgres"
	"onebox/store/sqlite"
)

func openSQLite(tb testing.TB) *sqlite.Store {
	tb.Helper()
	st, err := sqlite.New(tb.Context(), sqlite.Options{Path: filepath.Join(tb.TempDir(), "onebox.db"), ReadConns: 2})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}

func openPostgres(tb testing.TB) *postgres.Store {
	tb.Helper()
	st, err := postgres.New(tb.Context(), postgres.Options{URL: pgtest.Schema(tb, "copy")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}

func sqliteBackend(t *testing.T) (dbcopytest.Database, jobs.Queue) {
	st := openSQLite(t)
	return st, st.Queue(jobsqlite.Options{})
}

func postgresBackend(t *testing.T) (dbcopytest.Database, jobs.Queue) {
	st := openPostgres(t)
	return st, st.Queue(jobpg.Options{})
}

func TestSQLiteToSQLite(t *testing.T) {
	t.Parallel()
	dbcopytest.Run(t, sqliteBackend, sqliteBackend)
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

// BenchmarkCopy copies a database of 1,000 users with a session and 10
// photos each, every photo with an idempotency key and an event (33,000
// rows), from SQLite into a new SQLite file (the baseline) and into a
// new PostgreSQL schema, checksums included. Compare rows/s.
func BenchmarkCopy(b *testing.B) {
	src := openSQLite(b)
	rows := bulkSeed(b, src, 1000, 10)
	for _, dst := range []struct {
		name string
		open func(testing.TB) dbcopy.Database
	}{
		{"to-sqlite", func(tb testing.TB) dbcopy.Database { return openSQLite(tb) }},
		{"to-postgres", func(tb testing.TB) dbcopy.Database { return openPostgres(tb) }},
	} {
		b.Run(dst.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				to := dst.open(b)
				b.StartTimer()
				if _, err := dbcopy.Copy(b.Context(), src, to, dbcopy.Options{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// bulkSeed writes users, each with a session and photos, every photo
// with an idempotency key and an event, straight through WriteRows, and
// returns how many rows it wrote.
func bulkSeed(tb testing.TB, db dbcopy.Database, users, photos int) int {
	tb.Helper()
	now := time.Date(2026, 1, 2, 3, 4, 5, 678912000, time.UTC)
	tables := map[string][][]any{}
	event := int64(0)
	for u := range users {
		uid := fmt.Sprintf("u%07d", u)
		tables["users"] = append(tables["users"], []any{uid, "H" + uid, "h" + uid, "User", "", nil, "hash", now, now, int64(1)})
		tables["sessions"] = append(tables["sessions"], []any{fmt.Sprintf("%064d", u), uid, now, now.Add(time.Hour)})
		for p := range photos {
			pid := fmt.Sprintf("%s-p%03d", uid, p)
			tables["photos"] = append(tables["photos"], []any{pid, uid, "ready", "", int64(4), int64(3), "orig/" + pid, "image/png", int64(10),
				`[{"name":"w128","key":"v/` + pid + `","width":4,"height":3,"size":9,"content_type":"image/webp"}]`, now, now})
			tables["photo_idempotency"] = append(tables["photo_idempotency"], []any{uid, fmt.Sprintf("k%03d", p), pid, now, "sha256:x", now.Add(24 * time.Hour)})
			event++
			tables["events"] = append(tables["events"], []any{event, uid, pid, now})
		}
	}
	n := 0
	for _, t := range dbcopy.Tables() {
		rows := tables[t.Name]
		for start := 0; start < len(rows); start += 1000 {
			if _, err := db.WriteRows(tb.Context(), t, rows[start:min(start+1000, len(rows))]); err != nil {
				tb.Fatalf("seed %s: %v", t.Name, err)
			}
		}
		n += len(rows)
	}
	return n
}
