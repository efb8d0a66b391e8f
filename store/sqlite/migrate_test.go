package sqlite_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	jobsqlite "onebox/jobs/sqlite"
	"onebox/store"
	"onebox/store/internal/sqlutil"
	"onebox/store/sqlite"
)

// TestMigrateFromVersion1 upgrades a database made before the photos:
// its users survive, and the later versions, the Go-supplied one among
// them, are applied and recorded once.
func TestMigrateFromVersion1(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "onebox.db")
	v1, err := os.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	db := openRaw(t, path, 0)
	for _, q := range []string{
		`CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT '') STRICT`,
		string(v1),
		`INSERT INTO schema_migrations (version, name) VALUES (1, 'init')`,
		`INSERT INTO users (id, handle, handle_key, display_name, password_hash, created_at, updated_at)
VALUES ('u1', 'Old', 'old', 'Old', 'x', '2024-01-01T00:00:00.000000000Z', '2024-01-01T00:00:00.000000000Z')`,
	} {
		if _, err := db.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%.40s: %v", q, err)
		}
	}
	db.Close()

	s := mustNew(t, sqlite.Options{Path: path})
	if got, want := migrationRows(t, path), expectedMigrationRows(t); got != want {
		t.Errorf("schema_migrations version:rows = %v, want %v", got, want)
	}
	var name string
	if err := openRaw(t, path, time.Second).QueryRowContext(t.Context(),
		`SELECT name FROM schema_migrations WHERE version = 3`).Scan(&name); err != nil || name != "jobs" {
		t.Errorf("migration 3 is %q (%v), want the job queue's schema", name, err)
	}
	p := photoParams(t, "u1")
	mustCreatePhoto(t, s, p)
	wantJobs(t, s.Queue(jobsqlite.Options{}), processKind, p.Job)
	if _, err := s.User(t.Context(), store.UserParams{ID: "u1"}); err != nil {
		t.Errorf("user of version 1: %v", err)
	}
}

// TestMigrateIdempotencyKeys upgrades a database of version 3, whose
// idempotency keys have no digest and no expiry: such a key answers a
// retry with any digest for a day after it was taken, as the default TTL
// would, and then is forgotten and pruned.
func TestMigrateIdempotencyKeys(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "onebox.db")
	db := openRaw(t, path, 0)
	queries := []string{`CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT '') STRICT`}
	for _, f := range []string{"0001_init.sql", "0002_photos.sql"} {
		q, err := os.ReadFile("migrations/" + f)
		if err != nil {
			t.Fatal(err)
		}
		queries = append(queries, string(q))
	}
	const taken = "2024-01-31T23:59:59.123456789Z"
	queries = append(queries, jobsqlite.Schema,
		`INSERT INTO schema_migrations (version, name) VALUES (1, 'init'), (2, 'photos'), (3, 'jobs')`,
		`INSERT INTO users (id, handle, handle_key, display_name, password_hash, created_at, updated_at)
VALUES ('u1', 'Old', 'old', 'Old', 'x', '`+taken+`', '`+taken+`')`,
		`INSERT INTO photos (id, owner_id, status, original_key, content_type, size, created_at, updated_at)
VALUES ('p1', 'u1', 'processing', 'originals/p1', 'image/png', 1, '`+taken+`', '`+taken+`')`,
		`INSERT INTO photo_idempotency (owner_id, key, photo_id, created_at) VALUES ('u1', 'k1', 'p1', '`+taken+`')`,
	)
	for _, q := range queries {
		if _, err := db.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%.40s: %v", q, err)
		}
	}
	db.Close()

	s := mustNew(t, sqlite.Options{Path: path})
	at, err := time.Parse(time.RFC3339Nano, taken)
	if err != nil {
		t.Fatal(err)
	}
	expires := at.Add(24 * time.Hour)
	lookup := func(now time.Time, digest string) error {
		_, err := s.PhotoByIdempotencyKey(t.Context(), store.IdempotencyParams{OwnerID: "u1", Key: "k1", Digest: digest, Now: now})
		return err
	}
	for _, d := range []string{"sha256:aa", "sha256:bb"} {
		if err := lookup(expires.Add(-time.Nanosecond), d); err != nil {
			t.Errorf("old key with digest %s just before its expiry: %v", d, err)
		}
	}
	if err := lookup(expires, "sha256:aa"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old key at its expiry: got %v, want store.ErrNotFound", err)
	}
	if n, err := s.PruneIdempotencyKeys(t.Context(), expires.Add(-time.Nanosecond), 10); err != nil || n != 0 {
		t.Errorf("prune before the expiry: %d, %v; want 0", n, err)
	}
	if n, err := s.PruneIdempotencyKeys(t.Context(), expires, 10); err != nil || n != 1 {
		t.Errorf("prune at the expiry: %d, %v; want 1", n, err)
	}
}

// TestNoCreateAndPending: with NoCreate a missing database stays missing
// (the error says so), a database made without migrating reports every
// migration pending, Apply names what it applied, and then nothing is
// pending or left to apply.
func TestNoCreateAndPending(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "onebox.db")
	if s, err := sqlite.New(ctx, sqlite.Options{Path: path, NoCreate: true, SkipMigrate: true}); !errors.Is(err, fs.ErrNotExist) {
		if err == nil {
			s.Close()
		}
		t.Errorf("NoCreate on a missing file: err %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("NoCreate created %s: %v", path, err)
	}
	all, err := sqlite.MigrationCount()
	if err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.New(ctx, sqlite.Options{Path: path, SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	steps := []struct {
		name        string
		do          func() ([]string, error)
		want, first string
	}{
		{"pending before", func() ([]string, error) { return s.Pending(ctx) }, strconv.Itoa(all), "0001_init"},
		{"apply", func() ([]string, error) { return s.Apply(ctx) }, strconv.Itoa(all), "0001_init"},
		{"pending after", func() ([]string, error) { return s.Pending(ctx) }, "0", ""},
		{"apply again", func() ([]string, error) { return s.Apply(ctx) }, "0", ""},
	}
	for _, st := range steps {
		got, err := st.do()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if strconv.Itoa(len(got)) != st.want || len(got) > 0 && got[0] != st.first {
			t.Errorf("%s: %v, want %s names starting with %q", st.name, got, st.want, st.first)
		}
	}
	// An existing database opens with NoCreate.
	s2, err := sqlite.New(ctx, sqlite.Options{Path: path, NoCreate: true, SkipMigrate: true})
	if err != nil {
		t.Fatalf("NoCreate on an existing file: %v", err)
	}
	if p, err := s2.Pending(ctx); err != nil || len(p) != 0 {
		t.Errorf("pending through a NoCreate store: %v %v", p, err)
	}
	s2.Close()
}

// TestMigrationsExpandOnly: every migration only expands the schema (or
// is marked as the contract step), since the previous release still
// serves on it while a deploy hands over (README, Deploy).
func TestMigrationsExpandOnly(t *testing.T) {
	t.Parallel()
	ms, err := sqlite.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if err := sqlutil.ExpandOnly(m); err != nil {
			t.Error(err)
		}
	}
}
