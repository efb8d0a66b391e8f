package sqlite

import (
	"context"
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
// slow read after another, while 400 writes of 64 KiB go through: the
// WAL stays under its bound, because each read's snapshot ends at
// MaxReadSnapshot and, once the WAL is past half its bound, the
// checkpointer copies it whole with the reads held back. Without either
// the WAL could not start over and would take every write, 26 MiB.
func TestWALBoundedWithReader(t *testing.T) {
	t.Parallel()
	const maxWAL = 16 << 20
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
	for i := range 400 {
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
