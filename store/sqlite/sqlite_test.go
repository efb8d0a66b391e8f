package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"onebox/store"
	"onebox/store/sqlite"
	"onebox/store/storetest"
)

// The suite reads what the store enqueued through Enqueued
// (enqueued_export_test.go).
var _ storetest.EnqueuedReader = (*sqlite.Store)(nil)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		return mustNew(t, sqlite.Options{})
	})
}

// mustNew opens a store on a fresh file in t.TempDir unless opts.Path is
// set, and closes it when the test ends.
func mustNew(tb testing.TB, opts sqlite.Options) *sqlite.Store {
	tb.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(tb.TempDir(), "onebox.db")
	}
	s, err := sqlite.New(tb.Context(), opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func newID(tb testing.TB) string {
	tb.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		tb.Fatalf("uuid: %v", err)
	}
	return id.String()
}

func mustCreateUser(tb testing.TB, s *sqlite.Store) store.User {
	tb.Helper()
	id := newID(tb)
	u, err := s.CreateUser(tb.Context(), store.CreateUserParams{
		ID: id, Handle: "user-" + id, DisplayName: "x", PasswordHash: "x", Now: time.Now(),
	})
	if err != nil {
		tb.Fatalf("CreateUser: %v", err)
	}
	return u
}

func TestNewRejectsPath(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"", ":memory:", filepath.Join(t.TempDir(), "a?b.db")} {
		if s, err := sqlite.New(t.Context(), sqlite.Options{Path: path}); err == nil {
			s.Close()
			t.Errorf("New(%q): got nil error", path)
		}
	}
}

// TestPragmas checks the driver really applies the DSN's pragmas, on
// both pools.
func TestPragmas(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "onebox.db")
	s := mustNew(t, sqlite.Options{Path: path, BusyTimeout: 1234 * time.Millisecond})
	tests := []struct {
		pragma string
		want   string // on the writer
		reader string // on the reader pool and the key reader
	}{
		{"journal_mode", "wal", "wal"},
		{"busy_timeout", "1234", "1234"},
		{"synchronous", "1", "1"}, // NORMAL
		{"foreign_keys", "1", "1"},
		{"query_only", "0", "1"},
	}
	for _, tt := range tests {
		for _, pool := range []string{"writer", "reader", "keys"} {
			want := tt.reader
			if pool == "writer" {
				want = tt.want
			}
			got, err := s.Pragma(t.Context(), pool, tt.pragma)
			if err != nil {
				t.Fatalf("PRAGMA %s on %s: %v", tt.pragma, pool, err)
			}
			if got != want {
				t.Errorf("PRAGMA %s on %s = %q, want %q", tt.pragma, pool, got, want)
			}
		}
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no WAL file: %v", err)
	}
}

// TestMigrateConcurrent migrates one new file from two stores at once,
// as two processes starting together would, through New or through an
// explicit Migrate. Migrating again is a no-op, and schema_migrations
// ends with one row per version.
func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		skipMigrate bool
	}{
		{"New", false},
		{"Migrate", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "onebox.db")
			stores := make([]*sqlite.Store, 2)
			var g errgroup.Group
			start := make(chan struct{})
			for i := range stores {
				g.Go(func() error {
					<-start
					s, err := sqlite.New(t.Context(), sqlite.Options{Path: path, SkipMigrate: tt.skipMigrate})
					if err != nil {
						return err
					}
					stores[i] = s
					if tt.skipMigrate {
						return s.Migrate(t.Context())
					}
					return nil
				})
			}
			close(start)
			err := g.Wait()
			for _, s := range stores {
				if s != nil {
					t.Cleanup(func() { s.Close() })
				}
			}
			if err != nil {
				t.Fatalf("concurrent migration: %v", err)
			}

			for _, s := range stores {
				if err := s.Migrate(t.Context()); err != nil {
					t.Fatalf("Migrate again: %v", err)
				}
			}
			if got, want := migrationRows(t, path), expectedMigrationRows(t); got != want {
				t.Errorf("schema_migrations version:rows = %v, want %v", got, want)
			}
			for _, s := range stores {
				mustCreateUser(t, s)
			}
		})
	}
}

// migrationRows lists "version:rows" for each version in schema_migrations.
func migrationRows(t *testing.T, path string) string {
	t.Helper()
	rows, err := openRaw(t, path, 0).QueryContext(t.Context(),
		`SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var version, n int
		if err := rows.Scan(&version, &n); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d:%d", version, n))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(got)
}

func expectedMigrationRows(t *testing.T) string {
	t.Helper()
	n, err := sqlite.MigrationCount()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for v := 1; v <= n; v++ {
		want = append(want, fmt.Sprintf("%d:1", v))
	}
	return fmt.Sprint(want)
}

// openRaw opens path outside any Store, as another process would.
func openRaw(tb testing.TB, path string, busy time.Duration) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", fmt.Sprintf("%s?_pragma=busy_timeout(%d)", path, busy.Milliseconds()))
	if err != nil {
		tb.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	tb.Cleanup(func() { db.Close() })
	return db
}

// TestBusy holds the write lock from another connection: writes fail
// with store.ErrBusy once BusyTimeout passes, reads go on (WAL).
func TestBusy(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "onebox.db")
	s := mustNew(t, sqlite.Options{Path: path, BusyTimeout: 50 * time.Millisecond})
	u := mustCreateUser(t, s)

	lock, err := openRaw(t, path, 0).Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}

	bio := "busy"
	writes := []struct {
		name string
		op   func(ctx context.Context) error
	}{
		{"UpdateUser", func(ctx context.Context) error {
			_, err := s.UpdateUser(ctx, store.UpdateUserParams{ID: u.ID, Bio: &bio, Now: time.Now()})
			return err
		}},
		{"SetPassword", func(ctx context.Context) error {
			return s.SetPassword(ctx, store.SetPasswordParams{UserID: u.ID, PasswordHash: "y", Now: time.Now()})
		}},
		{"CreateSession", func(ctx context.Context) error {
			return s.CreateSession(ctx, store.Session{TokenHash: newID(t), UserID: u.ID, CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
		}},
		{"DeleteUser", func(ctx context.Context) error { return s.DeleteUser(ctx, store.DeleteUserParams{ID: u.ID}) }},
	}
	for _, w := range writes {
		start := time.Now()
		err := w.op(t.Context())
		if !errors.Is(err, store.ErrBusy) {
			t.Errorf("%s under a held lock: got %v, want store.ErrBusy", w.name, err)
		}
		if d := time.Since(start); d < 40*time.Millisecond || d > 5*time.Second {
			t.Errorf("%s gave up after %v, want about the 50ms BusyTimeout", w.name, d)
		}
	}
	if _, err := s.User(t.Context(), store.UserParams{ID: u.ID, Freshness: store.MustBeFresh}); err != nil {
		t.Errorf("read under a held write lock: %v", err)
	}

	if _, err := lock.ExecContext(t.Context(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := writes[0].op(t.Context()); err != nil {
		t.Errorf("UpdateUser after the lock is released: %v", err)
	}
}

func TestOnQuery(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		events []store.QueryEvent
	)
	s := mustNew(t, sqlite.Options{OnQuery: func(_ context.Context, ev store.QueryEvent) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, ev)
	}})
	u := mustCreateUser(t, s)

	mu.Lock()
	events = nil
	mu.Unlock()
	if _, err := s.User(t.Context(), store.UserParams{ID: u.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.User(t.Context(), store.UserParams{ID: newID(t)}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("User(unknown): %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 {
		t.Fatalf("got %d events, want 2: %+v", len(events), events)
	}
	for i, wantErr := range []error{nil, store.ErrNotFound} {
		ev := events[i]
		if ev.Name != "users_by_id" || ev.SQL == "" || ev.Duration <= 0 {
			t.Errorf("event %d = %+v, want users_by_id with SQL and a duration", i, ev)
		}
		if (wantErr == nil) != (ev.Err == nil) || !errors.Is(ev.Err, wantErr) {
			t.Errorf("event %d error = %v, want %v", i, ev.Err, wantErr)
		}
	}
}

// TestOnQueryOutsideTheWriter: a write's queries (its BEGIN, the
// statements of its transaction) reach the hook once the write has let
// the writer go, each with the time it ended: a hook that takes
// microseconds (a span) would otherwise hold up every write queued
// behind.
func TestOnQueryOutsideTheWriter(t *testing.T) {
	t.Parallel()
	type seen struct {
		ev      store.QueryEvent
		holder  string // the writer's holder while the hook ran
		reached time.Time
	}
	var (
		mu     sync.Mutex
		events []seen
		opened atomic.Pointer[sqlite.Store] // none while New migrates
	)
	s := mustNew(t, sqlite.Options{OnQuery: func(_ context.Context, ev store.QueryEvent) {
		s := opened.Load()
		if s == nil {
			return
		}
		h := s.Stats().WriterHolder
		mu.Lock()
		defer mu.Unlock()
		events = append(events, seen{ev: ev, holder: h.Query, reached: time.Now()})
	}})
	opened.Store(s)
	u := mustCreateUser(t, s)
	mu.Lock()
	events = nil
	mu.Unlock()

	// With a key, photos_create runs statements of its own in the
	// transaction, then enqueues its job.
	mustCreatePhoto(t, s, keyedParams(t, u.ID, "key-1", "digest-1"))

	mu.Lock()
	defer mu.Unlock()
	want := map[string]bool{"photos_create_begin": false, "photo_idempotency_delete_expired": false, "photos_by_idempotency_key": false, "jobs_send": false, "photos_create_commit": false}
	for _, e := range events {
		if _, ok := want[e.ev.Name]; ok {
			want[e.ev.Name] = true
		}
		if e.holder == "photos_create" {
			t.Errorf("%s reached the hook while its write held the writer", e.ev.Name)
		}
		if e.ev.End.IsZero() || e.ev.End.After(e.reached) || e.ev.Duration <= 0 {
			t.Errorf("%s: End %v, Duration %v, reached the hook at %v: want an end no later than that and a duration", e.ev.Name, e.ev.End, e.ev.Duration, e.reached)
		}
	}
	for name, ok := range want {
		if !ok {
			t.Errorf("no %s event among %d", name, len(events))
		}
	}
}

func TestSeedUsers(t *testing.T) {
	t.Parallel()
	s := mustNew(t, sqlite.Options{})
	users := seedParams(t, 1000)
	if err := s.SeedUsers(t.Context(), users); err != nil {
		t.Fatalf("SeedUsers: %v", err)
	}
	page, err := s.ListUsers(t.Context(), store.ListUsersParams{Limit: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != len(users) {
		t.Errorf("listed %d users, want %d", len(page), len(users))
	}

	// A batch with one taken handle inserts nothing.
	batch := seedParams(t, 10)
	batch[9].Handle = users[0].Handle
	if err := s.SeedUsers(t.Context(), batch); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("SeedUsers with a taken handle: got %v, want store.ErrConflict", err)
	}
	if _, err := s.User(t.Context(), store.UserParams{ID: batch[0].ID}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("first user of a failed batch: got %v, want store.ErrNotFound", err)
	}
}

func seedParams(tb testing.TB, n int) []store.CreateUserParams {
	tb.Helper()
	now := time.Now()
	users := make([]store.CreateUserParams, n)
	for i := range users {
		id := newID(tb)
		users[i] = store.CreateUserParams{
			ID: id, Handle: "seed-" + id, DisplayName: fmt.Sprintf("Seed %d", i), PasswordHash: "x", Now: now,
		}
	}
	return users
}
