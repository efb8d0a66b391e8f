// Command walsoak is the WAL soak: writes flow at a steady rate into an
// SQLite store while readers never stop, one of them a reader of the
// whole users table back to back (a snapshot held open for the whole
// run), and it reports whether the WAL stayed under its bound and how
// long any write waited on a checkpoint. It is not a test: run it by
// hand (a few minutes), as README (Operations → The writer and the WAL)
// says.
//
//	go run ./bench/walsoak -for 3m
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"onebox/correlation"
	"onebox/store"
	"onebox/store/sqlite"
)

func main() {
	dur := flag.Duration("for", 3*time.Minute, "how long writes flow")
	users := flag.Int("users", 20000, "users seeded (the long reader reads them all, back to back)")
	rate := flag.Int("rate", 1000, "profile edits a second")
	readers := flag.Int("reads", 2000, "profile reads by key a second")
	maxWAL := flag.Int64("max-wal", 64<<20, "the WAL's bound (ONEBOX_WAL_MAX_BYTES)")
	dir := flag.String("dir", "", "data directory (default: a temporary one, removed)")
	flag.Parse()
	if err := run(*dur, *users, *rate, *readers, *maxWAL, *dir); err != nil {
		log.Fatal(err)
	}
}

// waits collects the writes' waits for the writer, and the
// checkpointer's holds of it (what a write could wait on).
type waits struct {
	mu        sync.Mutex
	writes    []time.Duration // each write's wait for the writer
	ckptHolds []time.Duration
	ckptByQ   map[string]int
}

func (w *waits) hold(h sqlite.WriterHold) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if h.OnBehalfOf == sqlite.Checkpointer {
		w.ckptHolds = append(w.ckptHolds, h.Held)
		w.ckptByQ[h.Query]++
		return
	}
	w.writes = append(w.writes, h.Waited)
}

func run(dur time.Duration, nUsers, rate, nReaders int, maxWAL int64, dir string) error {
	ctx := context.Background()
	if dir == "" {
		d, err := os.MkdirTemp("", "walsoak")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	w := &waits{ckptByQ: map[string]int{}}
	st, err := sqlite.New(ctx, sqlite.Options{
		Path: filepath.Join(dir, "onebox.db"), OnWriterHold: w.hold,
		Checkpoint: sqlite.CheckpointOptions{MaxWALBytes: maxWAL},
	})
	if err != nil {
		return err
	}
	defer st.Close()

	ids := make([]string, nUsers)
	for i := 0; i < nUsers; i += 5000 {
		var batch []store.CreateUserParams
		for j := i; j < min(i+5000, nUsers); j++ {
			id, _ := uuid.NewV7()
			ids[j] = id.String()
			batch = append(batch, store.CreateUserParams{ID: ids[j], Handle: fmt.Sprintf("u%d", j), DisplayName: "soak", PasswordHash: "x", Now: time.Now()})
		}
		if err := st.SeedUsers(ctx, batch); err != nil {
			return err
		}
	}
	w.mu.Lock()
	w.writes = w.writes[:0]
	w.mu.Unlock()
	fmt.Printf("seeded %d users; writes %d/s, reads by key %d/s, one reader of all %d users back to back, for %s; WAL bound %s\n",
		nUsers, rate, nReaders, nUsers, dur, mib(maxWAL))

	runCtx, stop := context.WithTimeout(ctx, dur)
	defer stop()
	var wg sync.WaitGroup
	var edits, editErrs, keyReads, longReads, longCut atomic.Int64
	wg.Go(func() { // the writes, paced
		wctx := correlation.WithOnBehalfOf(runCtx, "PATCH /v1/users/me")
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		bio := strings.Repeat("soak ", 200) // 1 KB
		for n := 0; ; n++ {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
			}
			b := bio + fmt.Sprint(n)
			if _, err := st.UpdateUser(wctx, store.UpdateUserParams{ID: ids[rand.IntN(len(ids))], Bio: &b, Now: time.Now()}); err != nil && runCtx.Err() == nil {
				editErrs.Add(1)
			}
			edits.Add(1)
		}
	})
	for range 4 {
		wg.Go(func() { // reads by key, paced
			tick := time.NewTicker(4 * time.Second / time.Duration(nReaders))
			defer tick.Stop()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-tick.C:
				}
				_, _ = st.User(runCtx, store.UserParams{ID: ids[rand.IntN(len(ids))], Freshness: store.MayBeStale})
				keyReads.Add(1)
			}
		})
	}
	wg.Go(func() { // the long reader: never a moment without its snapshot
		for runCtx.Err() == nil {
			_, err := st.ListUsers(runCtx, store.ListUsersParams{Limit: nUsers})
			if errors.Is(err, context.DeadlineExceeded) && runCtx.Err() == nil {
				longCut.Add(1)
			}
			longReads.Add(1)
		}
	})

	var peak int64
	var peakAt time.Duration
	start := time.Now()
	sample := time.NewTicker(time.Second)
	defer sample.Stop()
	last := time.Now()
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case <-sample.C:
		}
		if b := st.WAL().Bytes; b > peak {
			peak, peakAt = b, time.Since(start).Round(time.Second)
		}
		if time.Since(last) >= 30*time.Second {
			last = time.Now()
			wal := st.WAL()
			fmt.Printf("  %4s: WAL %s (peak %s), %d edits, %d long reads, checkpoints %v\n",
				time.Since(start).Round(time.Second), mib(wal.Bytes), mib(peak), edits.Load(), longReads.Load(), wal.Counts)
		}
	}
	wg.Wait()
	wal := st.WAL()
	w.mu.Lock()
	defer w.mu.Unlock()
	slices.Sort(w.writes)
	slices.Sort(w.ckptHolds)
	q := func(ds []time.Duration, p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		return ds[min(len(ds)-1, int(p*float64(len(ds))))]
	}
	fmt.Printf("\nWAL peak %s at %s (bound %s): %s\n", mib(peak), peakAt, mib(maxWAL), verdict(peak <= maxWAL))
	fmt.Printf("edits %d (%d failed), key reads %d, long reads %d (%d cut at MaxReadSnapshot)\n", edits.Load(), editErrs.Load(), keyReads.Load(), longReads.Load(), longCut.Load())
	fmt.Printf("checkpoints %v\n", wal.Counts)
	fmt.Printf("checkpointer's holds of the writer: %d %v, p99 %s, max %s: no write waited on a checkpoint longer than that\n",
		len(w.ckptHolds), w.ckptByQ, q(w.ckptHolds, 0.99), q(w.ckptHolds, 1))
	fmt.Printf("writes' waits for the writer: p50 %s, p99 %s, max %s\n", q(w.writes, 0.5), q(w.writes, 0.99), q(w.writes, 1))
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func verdict(ok bool) string {
	if ok {
		return "stayed under"
	}
	return "OVER THE BOUND"
}
