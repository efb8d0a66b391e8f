package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"onebox/internal/pgtest"
)

func TestParseLSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0/0", 0, true},
		{"0/3000060", 0x3000060, true},
		{"16/B374D848", 0x16<<32 | 0xB374D848, true},
		{"FFFFFFFF/FFFFFFFF", 1<<64 - 1, true},
		{"1/0", 1 << 32, true}, // above every 0/X
		{"", 0, false},
		{"3000060", 0, false},
		{"0/G", 0, false},
		{"100000000/0", 0, false},
	} {
		got, err := parseLSN(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseLSN(%q) = %#x, %v; want %#x, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// openDB opens a database/sql handle over a pgx pool, closed after.
func openDB(t *testing.T, rawURL string) *sql.DB {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), rawURL)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() {
		db.Close()
		pool.Close()
	})
	return db
}

func newTestSet(t *testing.T, primary *sql.DB, replicaURLs ...string) *replicaSet {
	t.Helper()
	s, err := newReplicaSet(primary, replicaURLs, ReplicaOptions{CheckInterval: 50 * time.Millisecond, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

// eventually checks the set until cond holds, failing after 30 seconds.
func eventually(t *testing.T, s *replicaSet, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.check(t.Context())
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s, still not %s: %+v", what, s.status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// token is the primary's WAL position now, read after a commit: a read
// carrying it must see that commit.
func token(t *testing.T, primary *sql.DB) string {
	t.Helper()
	var lsn string
	if err := primary.QueryRowContext(t.Context(), "select pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// noteBody reads note id on db: "" and sql.ErrNoRows if it is not there.
func noteBody(t *testing.T, db *sql.DB, id int) (string, error) {
	t.Helper()
	var body string
	err := db.QueryRowContext(t.Context(), "select body from notes where id = $1", id).Scan(&body)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("read note %d: %v", id, err)
	}
	return body, err
}

// Not parallel: it pauses replay on the shared replica, which other
// tests of this package read from.
func TestReplicaReadYourWritesWhileReplayPaused(t *testing.T) {
	primaryURL := pgtest.Schema(t, "replicas")
	replicaURL := pgtest.ReplicaURL(t)
	primary := openDB(t, primaryURL)
	// The replica sees the schema the primary made: same search_path.
	replicaURL = pgtest.WithParams(t, replicaURL, map[string]string{"search_path": searchPath(t, primaryURL)})
	s := newTestSet(t, primary, replicaURL)
	replica := openDB(t, replicaURL)
	ctx := t.Context()

	exec(t, primary, "create table notes (id int primary key, body text not null)")
	created := token(t, primary)
	eventually(t, s, "serving the table's token from the replica", func() bool {
		_, name := s.pick(created)
		return name != primaryName
	})

	exec(t, replica, "select pg_wal_replay_pause()")
	t.Cleanup(func() {
		// Whatever happens, the shared replica replays again.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := replica.ExecContext(ctx, "select pg_wal_replay_resume()"); err != nil {
			t.Errorf("resume replay: %v", err)
		}
	})
	eventually(t, s, "paused", func() bool {
		var state string
		if err := replica.QueryRowContext(ctx, "select pg_get_wal_replay_pause_state()").Scan(&state); err != nil {
			t.Fatal(err)
		}
		return state == "paused"
	})

	exec(t, primary, "insert into notes values (1, 'mine')")
	tok := token(t, primary)
	s.check(ctx)

	// The writer carries the token: the primary answers, with the write.
	db, name := s.pick(tok)
	if name != primaryName {
		t.Fatalf("pick(%s) = %s while replay is paused behind it, want the primary; %+v", tok, name, s.status())
	}
	if body, err := noteBody(t, db, 1); err != nil || body != "mine" {
		t.Fatalf("the writer's read: %q, %v; want its write", body, err)
	}
	// Another reader, no token: the replica, stale as it may be.
	db, name = s.pick("")
	if name == primaryName {
		t.Fatalf("pick(\"\") = primary, want the replica in rotation; %+v", s.status())
	}
	if body, err := noteBody(t, db, 1); !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("the tokenless read on the paused replica found %q: replay was not paused", body)
	}

	// Over a lag bound, the replica leaves the rotation: even reads
	// without a token go to the primary.
	strict, err := newReplicaSet(primary, []string{replicaURL}, ReplicaOptions{MaxLagBytes: 1, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.close()
	strict.check(ctx)
	if _, name := strict.pick(""); name != primaryName {
		t.Errorf("pick(\"\") with a lag bound of 1 byte and replay paused = %s, want the primary; %+v", name, strict.status())
	}
	if st := strict.status()[0]; !st.Healthy || st.InRotation || st.LagBytes < 1 || st.LastError == "" {
		t.Errorf("status over the lag bound: %+v", st)
	}

	exec(t, replica, "select pg_wal_replay_resume()")
	eventually(t, s, "serving the token from the replica after resume", func() bool {
		_, name := s.pick(tok)
		return name != primaryName
	})
	db, _ = s.pick(tok)
	if body, err := noteBody(t, db, 1); err != nil || body != "mine" {
		t.Fatalf("the token's read on the replica that caught up: %q, %v; want the write", body, err)
	}
	for _, st := range s.status() {
		if !st.Healthy || !st.InRotation || st.ReplayLSN == "" || st.LastError != "" {
			t.Errorf("status after catching up: %+v", st)
		}
	}
}

// searchPath is the search_path a pgtest.Schema URL sets.
func searchPath(t *testing.T, rawURL string) string {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.ConnConfig.RuntimeParams["search_path"]
}

// A replica that stops under load leaves the rotation, every read still
// succeeds (on the primary), and it returns once restarted. Both servers
// are the test's own: stopping the shared replica would fail the other
// packages' tests.
func TestReplicaStoppedUnderLoadLeavesRotationAndReturns(t *testing.T) {
	t.Parallel()
	primaryURL, _ := pgtest.StartPrivate(t)
	replicaURL, rc := pgtest.StartReplica(t, primaryURL)
	primary := openDB(t, primaryURL)
	s := newTestSet(t, primary, replicaURL)
	replicaName := s.replicas[0].name
	ctx := t.Context()

	eventually(t, s, "the replica in rotation", func() bool { return s.status()[0].InRotation })

	// An idle primary's replica that has replayed everything has no lag,
	// however long ago the last write was: the lag in seconds is the
	// primary's replay_lag, not the age of the last replayed transaction.
	exec(t, primary, "create table idle (id int)")
	written := token(t, primary)
	eventually(t, s, "the write replayed", func() bool { _, name := s.pick(written); return name != primaryName })
	strict, err := newReplicaSet(primary, []string{replicaURL}, ReplicaOptions{MaxLag: time.Second, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.close()
	time.Sleep(1500 * time.Millisecond)
	strict.check(ctx)
	if st := strict.status()[0]; !st.InRotation || st.LagSeconds >= 1 {
		t.Errorf("a caught-up replica of a primary idle for 1.5s, with a lag bound of 1s: %+v, want in rotation", st)
	}

	checkCtx, stopChecks := context.WithCancel(ctx)
	var checker sync.WaitGroup
	checker.Go(func() { s.run(checkCtx) })
	defer checker.Wait()
	defer stopChecks()

	var reads, failed, onPrimary, onReplica atomic.Int64
	var firstErr atomic.Pointer[error]
	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	for range 3 {
		load.Go(func() {
			for loadCtx.Err() == nil {
				name, err := s.read(loadCtx, "", func(db *sql.DB) error {
					var one int
					return db.QueryRowContext(loadCtx, "select 1").Scan(&one)
				})
				switch {
				case loadCtx.Err() != nil:
					return
				case err != nil:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				case name == primaryName:
					onPrimary.Add(1)
				case name == replicaName:
					onReplica.Add(1)
				}
				reads.Add(1)
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("after 30s, still not %s: %+v", what, s.status())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	waitFor("reading from the replica", func() bool { return onReplica.Load() > 0 })
	if err := rc.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// The checker, not only a failed read, finds it down.
	stopped := time.Now()
	waitFor("checked and found down", func() bool { return s.status()[0].CheckedAt.After(stopped) })
	if st := s.status()[0]; st.Healthy || st.InRotation || st.LastError == "" {
		t.Errorf("stopped replica's status: %+v, want unhealthy, out of rotation, with its error", st)
	}
	before := onPrimary.Load()
	waitFor("reading from the primary", func() bool { return onPrimary.Load() > before })
	if db, name := s.pick(""); name != primaryName || db != primary {
		t.Errorf("pick with the replica down = %s, want the primary", name)
	}

	if err := rc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor("back in rotation", func() bool { return s.status()[0].InRotation })
	back := onReplica.Load()
	waitFor("reading from the replica again", func() bool { return onReplica.Load() > back })
	stopLoad()
	load.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d reads failed while the replica stopped; first: %v", n, reads.Load(), *firstErr.Load())
	}
	t.Logf("%d reads: %d on the primary, %d on the replica", reads.Load(), onPrimary.Load(), onReplica.Load())
}

// With no replica at all, every read goes to the primary.
func TestNoReplicasPicksThePrimary(t *testing.T) {
	t.Parallel()
	primary := openDB(t, pgtest.URL(t, "replicas"))
	s := newTestSet(t, primary)
	s.check(t.Context())
	for _, tok := range []string{"", "0/0", "FF/0", "not an LSN"} {
		if db, name := s.pick(tok); db != primary || name != primaryName {
			t.Errorf("pick(%q) = %s, want the primary", tok, name)
		}
	}
}

// A read that finds its replica gone is answered by the primary, and the
// replica leaves the rotation at once, before the next check.
func TestReadOnALostReplicaFallsBackAndEvicts(t *testing.T) {
	t.Parallel()
	primary := openDB(t, pgtest.URL(t, "replicas"))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := fmt.Sprintf("postgres://postgres@%s/test?sslmode=disable&connect_timeout=5", l.Addr())
	l.Close() // nothing listens there now
	s := newTestSet(t, primary, gone)
	// As a check would have left it just before the server went away.
	s.replicas[0].state.Store(&replicaState{status: ReplicaStatus{Name: s.replicas[0].name, Healthy: true, InRotation: true}})

	name, err := s.read(t.Context(), "", func(db *sql.DB) error {
		var one int
		return db.QueryRowContext(t.Context(), "select 1").Scan(&one)
	})
	if err != nil || name != primaryName {
		t.Fatalf("read = %s, %v; want the primary's answer", name, err)
	}
	if _, name := s.pick(""); name != primaryName {
		t.Errorf("pick after the failed read = %s, want the primary", name)
	}
	if st := s.status()[0]; st.InRotation || st.LastError == "" {
		t.Errorf("status after the failed read: %+v", st)
	}
}
