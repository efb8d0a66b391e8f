package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"onebox/internal/pgtest"
	"onebox/jobs"
	"onebox/store"
	"onebox/store/postgres"
	"onebox/store/storetest"
)

// The suite reads what the store enqueued through Enqueued
// (export_test.go).
var _ storetest.EnqueuedReader = (*postgres.Store)(nil)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		return mustNew(t, postgres.Options{})
	})
}

// mustNew opens a store on a schema of the test's own unless opts.URL
// is set, and closes it when the test ends.
func mustNew(tb testing.TB, opts postgres.Options) *postgres.Store {
	tb.Helper()
	if opts.URL == "" {
		opts.URL = pgtest.Schema(tb, "store")
	}
	s, err := postgres.New(tb.Context(), opts)
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

func mustCreateUser(tb testing.TB, s *postgres.Store) store.User {
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

// TestErrorMapping raises each error class the store maps, as the server
// reports it, inside a store transaction, and counts how often the
// transaction ran: serialization failures and deadlocks are retried up to
// Attempts times, then ErrBusy; the rest are answered at once.
func TestErrorMapping(t *testing.T) {
	t.Parallel()
	s := mustNew(t, postgres.Options{})
	tests := []struct {
		condition string // PL/pgSQL condition name
		want      error
		attempts  int
	}{
		{"serialization_failure", store.ErrBusy, 3},
		{"deadlock_detected", store.ErrBusy, 3},
		{"unique_violation", store.ErrConflict, 1},
		{"foreign_key_violation", store.ErrNotFound, 1},
		{"check_violation", store.ErrInvalid, 1},
		{"disk_full", store.ErrFull, 1},
		{"admin_shutdown", store.ErrBusy, 1},
		{"connection_failure", store.ErrBusy, 1},
		{"too_many_connections", store.ErrBusy, 1},
	}
	for _, tt := range tests {
		t.Run(tt.condition, func(t *testing.T) {
			raise := fmt.Sprintf(`do $$ begin raise exception 'test' using errcode = '%s'; end $$`, tt.condition)
			runs := 0
			err := s.InTx(t.Context(), "test_raise", func(tx *sql.Tx) error {
				runs++
				_, err := tx.ExecContext(t.Context(), raise)
				return err
			})
			if !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			if runs != tt.attempts {
				t.Errorf("the transaction ran %d times, want %d", runs, tt.attempts)
			}
		})
	}
	// The bound is Options.Attempts.
	t.Run("Attempts", func(t *testing.T) {
		s := mustNew(t, postgres.Options{Attempts: 5})
		runs := 0
		err := s.InTx(t.Context(), "test_raise", func(tx *sql.Tx) error {
			runs++
			_, err := tx.ExecContext(t.Context(), `do $$ begin raise exception 'test' using errcode = 'serialization_failure'; end $$`)
			return err
		})
		if !errors.Is(err, store.ErrBusy) || runs != 5 {
			t.Errorf("error %v after %d runs, want ErrBusy after 5", err, runs)
		}
	})
}

// TestRetryRecovers: a transaction that fails to serialize once, because
// another one changed the row it read under SERIALIZABLE, commits on
// the second run.
func TestRetryRecovers(t *testing.T) {
	t.Parallel()
	s := mustNew(t, postgres.Options{})
	u := mustCreateUser(t, s)
	runs := 0
	err := s.InTx(t.Context(), "test_serializable", func(tx *sql.Tx) error {
		runs++
		ctx := t.Context()
		if _, err := tx.ExecContext(ctx, `set transaction isolation level serializable`); err != nil {
			return err
		}
		var bio string
		if err := tx.QueryRowContext(ctx, `select bio from users where id = $1`, u.ID).Scan(&bio); err != nil {
			return err
		}
		if runs == 1 {
			// Another transaction changes the row after this one's snapshot.
			other := fmt.Sprintf("changed by another transaction %d", rand.Int())
			if _, err := s.UpdateUser(ctx, store.UpdateUserParams{ID: u.ID, Bio: &other, Now: time.Now()}); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `update users set bio = bio || ' and this one' where id = $1`, u.ID)
		return err
	})
	if err != nil {
		t.Fatalf("InTx: %v", err)
	}
	if runs != 2 {
		t.Errorf("the transaction ran %d times, want 2 (a serialization failure, then a commit)", runs)
	}
	got, err := s.User(t.Context(), store.UserParams{ID: u.ID, Freshness: store.MustBeFresh})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.Bio, "changed by another transaction") || !strings.HasSuffix(got.Bio, " and this one") {
		t.Errorf("bio %q: want the other transaction's change, then this one's", got.Bio)
	}
}

// TestUnreachable: a server that does not answer is ErrBusy, for New as
// for a store whose server went away.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	pgtest.URL(t, "store")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = postgres.New(ctx, postgres.Options{URL: "postgres://postgres@" + addr + "/test?sslmode=disable&connect_timeout=5"})
	if !errors.Is(err, store.ErrBusy) {
		t.Errorf("New on a closed port: %v, want ErrBusy", err)
	}
}

// TestTerminatedConnection: a connection the server ends under a
// transaction (an administrator's pg_terminate_backend, a restart) fails
// the transaction with ErrBusy, not with a driver error.
func TestTerminatedConnection(t *testing.T) {
	t.Parallel()
	s := mustNew(t, postgres.Options{})
	err := s.InTx(t.Context(), "test_terminated", func(tx *sql.Tx) error {
		ctx := t.Context()
		var pid int
		if err := tx.QueryRowContext(ctx, `select pg_backend_pid()`).Scan(&pid); err != nil {
			return err
		}
		var ok bool
		if err := s.DB().QueryRowContext(ctx, `select pg_terminate_backend($1, 5000)`, pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_terminate_backend: %v %v", ok, err)
		}
		_, err := tx.ExecContext(ctx, `select 1`)
		return err
	})
	if !errors.Is(err, store.ErrBusy) {
		t.Errorf("a transaction on a terminated connection: %v, want ErrBusy", err)
	}
	// The pool drops the dead connection: the store goes on.
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping after: %v", err)
	}
}

// TestMigrateConcurrent migrates one new schema from two stores at once,
// as two instances starting together would, through New or through an
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
			url := pgtest.Schema(t, "store")
			stores := make([]*postgres.Store, 2)
			var g errgroup.Group
			start := make(chan struct{})
			for i := range stores {
				g.Go(func() error {
					<-start
					s, err := postgres.New(t.Context(), postgres.Options{URL: url, SkipMigrate: tt.skipMigrate})
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
				applied, err := s.Apply(t.Context())
				if err != nil || len(applied) != 0 {
					t.Fatalf("Apply again: applied %v, %v; want none", applied, err)
				}
				pending, err := s.Pending(t.Context())
				if err != nil || len(pending) != 0 {
					t.Fatalf("Pending: %v, %v; want none", pending, err)
				}
			}
			rows, err := stores[0].DB().QueryContext(t.Context(),
				`select version, count(*) from schema_migrations group by version order by version`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var got []string
			for rows.Next() {
				var v, n int
				if err := rows.Scan(&v, &n); err != nil {
					t.Fatal(err)
				}
				got = append(got, fmt.Sprintf("%d:%d", v, n))
			}
			if want := []string{"1:1", "2:1", "3:1", "4:1", "5:1"}; !slices.Equal(got, want) {
				t.Errorf("schema_migrations version:rows = %v, want %v", got, want)
			}
			for _, s := range stores {
				mustCreateUser(t, s)
			}
		})
	}
}

// TestPending: a store opened with SkipMigrate on an empty schema lists
// every migration as pending, and none once migrated.
func TestPending(t *testing.T) {
	t.Parallel()
	s := mustNew(t, postgres.Options{SkipMigrate: true})
	pending, err := s.Pending(t.Context())
	want := []string{"0001_init", "0002_photos", "0003_jobs", "0004_idempotency_digest", "0005_jobs_fair"}
	if err != nil || !slices.Equal(pending, want) {
		t.Fatalf("Pending = %v, %v; want %v", pending, err, want)
	}
	applied, err := s.Apply(t.Context())
	if err != nil || !slices.Equal(applied, want) {
		t.Fatalf("Apply = %v, %v; want %v", applied, err, want)
	}
}

// TestEventsCommitOrder: with every event's transaction slowed between
// its insert and its commit, so that transactions holding smaller IDs are
// still open when larger ones could commit, the suite's commit-order
// check passes with the user's event lock, and fails without it.
func TestEventsCommitOrder(t *testing.T) {
	t.Parallel()
	slow := func() { time.Sleep(rand.N(2 * time.Millisecond)) }
	tests := []struct {
		name     string
		noLock   bool
		users    int
		wantFail bool
	}{
		{"lock, one user", false, 1, false},
		{"lock, three users", false, 3, false},
		{"no lock, one user", true, 1, true},
		{"no lock, three users", true, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Out-of-order commits are a race the check has to catch
			// while it happens: give it a few chances, each on a fresh store.
			attempts := 1
			if tt.wantFail {
				attempts = 5
			}
			for i := range attempts {
				s := mustNew(t, postgres.Options{})
				s.SlowEvents(slow, tt.noLock)
				err := storetest.CheckEventsCommitOrder(t.Context(), s, tt.users)
				switch {
				case !tt.wantFail && err != nil:
					t.Fatalf("CheckEventsCommitOrder: %v", err)
				case tt.wantFail && err != nil:
					t.Logf("attempt %d: CheckEventsCommitOrder failed as it should: %v", i+1, err)
					return
				}
			}
			if tt.wantFail {
				t.Errorf("CheckEventsCommitOrder passed %d times without the event lock", attempts)
			}
		})
	}
}

// TestExplain: the slow-query log gets PostgreSQL's generic plan of a
// statement with parameters, a read's and a write's, and nothing runs.
func TestExplain(t *testing.T) {
	t.Parallel()
	s := mustNew(t, postgres.Options{})
	u := mustCreateUser(t, s)
	tests := []struct {
		query string
		want  string // in the plan
	}{
		{`select id, handle from users where id = $1`, "Index Scan using users_pkey"},
		{`update users set bio = $2 where id = $1`, "Update on users"},
		{`select count(*) from users`, "Aggregate"},
	}
	for _, tt := range tests {
		plan, err := s.Explain(t.Context(), tt.query)
		if err != nil {
			t.Fatalf("Explain(%q): %v", tt.query, err)
		}
		if !strings.Contains(plan, tt.want) {
			t.Errorf("Explain(%q) =\n%s\nwant %q in it", tt.query, plan, tt.want)
		}
	}
	// Twice on one connection: the prepared statement is gone after each.
	for range 2 * pgtest.MaxConns {
		if _, err := s.Explain(t.Context(), `select 1 from users where id = $1`); err != nil {
			t.Fatalf("Explain again: %v", err)
		}
	}
	if _, err := s.Explain(t.Context(), `select nonsense from nowhere`); err == nil {
		t.Error("Explain of a broken statement: got nil error")
	}
	got, err := s.User(t.Context(), store.UserParams{ID: u.ID, Freshness: store.MustBeFresh})
	if err != nil || got.Bio != "" {
		t.Errorf("after Explain of an update: bio %q, %v; want it untouched", got.Bio, err)
	}
}

// TestRowCountsAndMediaKeys: the counts name every table of the schema,
// goqite's included, and the media keys are every photo's original and
// variants.
func TestRowCountsAndMediaKeys(t *testing.T) {
	t.Parallel()
	s := mustNew(t, postgres.Options{})
	u := mustCreateUser(t, s)
	ctx := t.Context()
	now := time.Now()
	for i, id := range []string{newID(t), newID(t)} {
		_, _, err := s.CreatePhoto(ctx, store.CreatePhotoParams{
			Photo: store.Photo{ID: id, OwnerID: u.ID, OriginalKey: fmt.Sprintf("orig/%d", i), ContentType: "image/png", Size: 1, CreatedAt: now},
			Job:   testJob(),
		})
		if err != nil {
			t.Fatalf("CreatePhoto: %v", err)
		}
		if i == 0 {
			_, err := s.FinishPhoto(ctx, store.FinishPhotoParams{ID: id, Status: store.PhotoReady, Now: now,
				Variants: []store.Variant{{Name: "w128", Key: "v/0/w128"}, {Name: "thumb", Key: "orig/0"}}})
			if err != nil {
				t.Fatalf("FinishPhoto: %v", err)
			}
		}
	}
	counts, err := s.RowCounts(ctx)
	if err != nil {
		t.Fatalf("RowCounts: %v", err)
	}
	want := map[string]int64{"users": 1, "sessions": 0, "photos": 2, "photo_idempotency": 0, "events": 3,
		"goqite": 2, "jobs_errors": 0, "jobs_dead": 0, "schema_migrations": 5}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("RowCounts = %v, want %v", counts, want)
	}
	keys, err := s.MediaKeys(ctx)
	if err != nil {
		t.Fatalf("MediaKeys: %v", err)
	}
	if want := []string{"orig/0", "orig/1", "v/0/w128"}; !slices.Equal(keys, want) {
		t.Errorf("MediaKeys = %v, want %v", keys, want)
	}
	if err := s.IntegrityCheck(ctx); err != nil {
		t.Errorf("IntegrityCheck: %v", err)
	}
}

// TestOnQuery: every query is reported by name, with its error mapped.
func TestOnQuery(t *testing.T) {
	t.Parallel()
	var names []string
	var errs []error
	var ends []time.Time
	s := mustNew(t, postgres.Options{SkipMigrate: true, OnQuery: func(_ context.Context, ev store.QueryEvent) {
		names = append(names, ev.Name)
		errs = append(errs, ev.Err)
		ends = append(ends, ev.End)
	}})
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	names, errs, ends = nil, nil, nil
	before := time.Now()
	_, err := s.User(t.Context(), store.UserParams{ID: newID(t)})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("User: %v", err)
	}
	if !slices.Equal(names, []string{"users_by_id"}) || !errors.Is(errs[0], store.ErrNotFound) {
		t.Errorf("OnQuery saw %v %v, want users_by_id with ErrNotFound", names, errs)
	}
	if len(ends) > 0 && (ends[0].Before(before) || ends[0].After(time.Now())) {
		t.Errorf("the query ended at %v, want within the call", ends[0])
	}
}

func testJob() jobs.Message {
	return jobs.Message{Kind: "test.process", Payload: []byte(`{}`)}
}

// TestMarkWritten: a session's token starts at the primary's position at
// its creation and grows with each write marked after it; a token never
// moves back, and Session returns the latest.
func TestMarkWritten(t *testing.T) {
	t.Parallel()
	s := mustNew(t, postgres.Options{})
	ctx := t.Context()
	u := mustCreateUser(t, s)
	hash := "hash-" + newID(t)
	var before store.Token
	if err := s.DB().QueryRowContext(ctx, `select pg_current_wal_lsn()::text`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, store.Session{TokenHash: hash, UserID: u.ID, CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	sess, err := s.Session(ctx, hash, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	less := func(a, b store.Token) bool {
		t.Helper()
		var ok bool
		if err := s.DB().QueryRowContext(ctx, `select $1::pg_lsn < $2::pg_lsn`, string(a), string(b)).Scan(&ok); err != nil {
			t.Fatalf("compare %q %q: %v", a, b, err)
		}
		return ok
	}
	if less(sess.Token, before) {
		t.Errorf("a new session's token %q is before the position %q read before its creation", sess.Token, before)
	}
	tokens := []store.Token{sess.Token}
	for i := range 3 {
		bio := fmt.Sprintf("write %d", i)
		if _, err := s.UpdateUser(ctx, store.UpdateUserParams{ID: u.ID, Bio: &bio, Now: time.Now()}); err != nil {
			t.Fatal(err)
		}
		tok, err := s.MarkWritten(ctx, hash)
		if err != nil {
			t.Fatalf("MarkWritten: %v", err)
		}
		if prev := tokens[len(tokens)-1]; !less(prev, tok) {
			t.Errorf("token after write %d is %q, not past the one before, %q", i, tok, prev)
		}
		tokens = append(tokens, tok)
	}
	got, err := s.Session(ctx, hash, time.Now())
	if err != nil || got.Token != tokens[len(tokens)-1] {
		t.Errorf("Session's token %q, %v; want the last MarkWritten's %q", got.Token, err, tokens[len(tokens)-1])
	}

	// A token ahead of the primary (as if set by a later write) stays.
	const ahead = "FFFFFFFF/0"
	if _, err := s.DB().ExecContext(ctx, `update sessions set read_lsn = $1 where token_hash = $2`, ahead, hash); err != nil {
		t.Fatal(err)
	}
	if tok, err := s.MarkWritten(ctx, hash); err != nil || tok != ahead {
		t.Errorf("MarkWritten with a token ahead: %q, %v; want %q", tok, err, ahead)
	}
}

// TestIdempotencyRaceWithoutLock: should creates with one key race past
// the owner's lock, the key's primary key stops the second, and its
// create runs again and answers with the first photo: never ErrConflict.
func TestIdempotencyRaceWithoutLock(t *testing.T) {
	t.Parallel()
	s := mustNew(t, postgres.Options{})
	s.SlowEvents(nil, true)
	u := mustCreateUser(t, s)
	now := time.Now()
	const n = 8
	ids := make([]string, n)
	created := make([]bool, n)
	var g errgroup.Group
	for i := range n {
		g.Go(func() error {
			ph, c, err := s.CreatePhoto(t.Context(), store.CreatePhotoParams{
				Photo:       store.Photo{ID: newID(t), OwnerID: u.ID, OriginalKey: "k", ContentType: "image/png", Size: 1, CreatedAt: now},
				Idempotency: store.Idempotency{Key: "upload-1", Digest: "sha256:x", ExpiresAt: now.Add(time.Hour)},
				Job:         testJob(),
			})
			ids[i], created[i] = ph.ID, c
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("racing CreatePhoto: %v", err)
	}
	if got := slices.Compact(slices.Sorted(slices.Values(ids))); len(got) != 1 {
		t.Errorf("racing creates returned photos %v, want one", got)
	}
	if c := slices.DeleteFunc(created, func(c bool) bool { return !c }); len(c) != 1 {
		t.Errorf("%d creates say they created the photo, want 1", len(c))
	}
}
