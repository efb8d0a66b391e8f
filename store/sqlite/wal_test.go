package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"onebox/store"
)

// slowReadSQL counts to a billion: a read that would hold its snapshot
// for minutes.
const slowReadSQL = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000000000) SELECT count(*) FROM c`

// TestWALBoundedWithReader holds a reader open on the reader pool, one
// slow read after another, while 600 writes of 64 KiB go through: the
// WAL stays under its bound, because each read's snapshot ends at
// MaxReadSnapshot and, once the WAL is past half its bound, the
// checkpointer copies it whole with the reads held back. Without either
// the WAL could not start over and would take every write, 38 MiB.
//
// The writes flow at most one every 5 ms (13 MiB/s), not as fast as the
// writer can go: the bound holds while the checkpointer, which looks
// every 100 ms, keeps up with the writes, and a flood on a machine whose
// other load starves the checkpointer's goroutine would test the
// scheduler instead (at load 15, unpaced writes peaked at 20–36 MiB).
func TestWALBoundedWithReader(t *testing.T) {
	t.Parallel()
	const maxWAL = 12 << 20
	path := filepath.Join(t.TempDir(), "onebox.db")
	s, err := New(t.Context(), Options{
		Path: path, MaxReadSnapshot: 200 * time.Millisecond,
		Checkpoint: CheckpointOptions{Every: 50 * time.Millisecond, MaxWALBytes: maxWAL},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := s.CreateUser(t.Context(), store.CreateUserParams{ID: "u1", Handle: "u1", DisplayName: "x", PasswordHash: "x", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}

	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var reads, cut int
	wg.Go(func() {
		for ctx.Err() == nil {
			_, err := queryAll(ctx, s, s.reader, "slow_read", slowReadSQL, func(r scanner, n *int64) error { return r.Scan(n) })
			reads++
			if errors.Is(err, context.DeadlineExceeded) {
				cut++
			}
		}
	})
	var peak int64
	pace := time.NewTicker(5 * time.Millisecond)
	defer pace.Stop()
	for i := range 600 {
		<-pace.C
		bio := strings.Repeat(string(rune('a'+i%26)), 64<<10)
		if _, err := s.UpdateUser(t.Context(), store.UpdateUserParams{ID: u.ID, Bio: &bio, Now: time.Now()}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		peak = max(peak, s.WAL().Bytes)
	}
	stop()
	wg.Wait()
	if peak > maxWAL {
		t.Errorf("WAL peaked at %d bytes, over its bound of %d (%d slow reads, %d cut at MaxReadSnapshot)", peak, maxWAL, reads, cut)
	}
	if cut == 0 {
		t.Errorf("no read was cut at MaxReadSnapshot (%d reads)", reads)
	}
	t.Logf("WAL peak %.1f MiB, bound %d MiB; %d slow reads, %d cut; checkpoints %v", float64(peak)/(1<<20), maxWAL>>20, reads, cut, s.WAL().Counts)
}

// TestTruncateWhenIdle: once writes stop, the checkpointer empties the
// WAL file; while another process's reader (Litestream's, say) is in the
// WAL, the truncate gives up at once instead of waiting for it, with the
// writer held, as a blocking checkpoint would (litestream#724).
func TestTruncateWhenIdle(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "onebox.db")
	s, err := New(t.Context(), Options{Path: path, Checkpoint: CheckpointOptions{Every: 50 * time.Millisecond, IdleAfter: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write := func(id string) {
		t.Helper()
		if _, err := s.CreateUser(t.Context(), store.CreateUserParams{ID: id, Handle: id, DisplayName: "x", PasswordHash: "x", Now: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(what string, cond func(WALStats) bool) WALStats {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if w := s.WAL(); cond(w) {
				return w
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not in 10s; WAL %+v", what, s.WAL())
			}
		}
	}
	write("a")
	w := wait("truncated", func(w WALStats) bool { return w.Counts["truncate/ok"] >= 1 })
	if w.Bytes != 0 {
		t.Errorf("WAL after the truncate: %d bytes, want 0", w.Bytes)
	}
	// Quiet now: the truncate's own hold of the writer is no write, and
	// brings no checkpoint after it.
	time.Sleep(600 * time.Millisecond)
	if after := s.WAL().Counts; after["truncate/ok"] != w.Counts["truncate/ok"] || after["passive/ok"] != w.Counts["passive/ok"] {
		t.Errorf("checkpoints while idle: %v, then %v", w.Counts, after)
	}

	// Another process's reader, as Litestream keeps one, that began
	// before the next write: no checkpoint may copy that write into the
	// file it reads, and a blocking checkpoint would wait for it to end,
	// writes held meanwhile.
	other, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int
	if _, err := conn.ExecContext(t.Context(), "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(t.Context(), "SELECT count(*) FROM users").Scan(&n); err != nil {
		t.Fatal(err)
	}
	write("b")
	w = wait("truncate gave up", func(w WALStats) bool { return w.Counts["truncate/busy"] >= 1 })
	if w.Last.Mode != "truncate" || w.Last.Duration > time.Second {
		t.Errorf("last checkpoint %s took %s, want a truncate that gave up at once", w.Last.Mode, w.Last.Duration)
	}
	if _, err := conn.ExecContext(t.Context(), "COMMIT"); err != nil {
		t.Fatal(err)
	}
}
