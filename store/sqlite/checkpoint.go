package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"onebox/correlation"
)

// CheckpointOptions configure the checkpointer. Zero fields take the
// defaults shown.
//
// onebox owns checkpointing: SQLite's auto-checkpoint is off on the
// writer, because it runs inside the COMMIT that crosses its threshold,
// on whatever request made that write. Instead a goroutine of the store
// runs, on a connection of its own:
//   - a PASSIVE checkpoint every Every while writes come, and at once
//     after a burst of AfterWrites writes. PASSIVE takes no lock a
//     writer or reader waits for: it copies what no reader still needs
//     and stops at the first frame one does. Once it has copied the
//     whole WAL, the next write starts the WAL over from its beginning,
//     so the file stops growing.
//   - a TRUNCATE checkpoint once no write has come for IdleAfter, which
//     empties the WAL file. It takes the writer's lock only if nobody
//     holds it (never queueing in front of writes) and runs with no busy
//     timeout, so it fails at once, rather than wait, while a reader
//     (Litestream's, say) still needs the WAL.
//
// No checkpoint ever runs on the request path, and none waits for a
// reader.
type CheckpointOptions struct {
	// Every is the PASSIVE checkpoints' period while writes come. 1s.
	Every time.Duration
	// AfterWrites writes since the last checkpoint make a burst, and a
	// PASSIVE checkpoint runs at the next look (every 100ms). 1000.
	AfterWrites int
	// IdleAfter without a write, the WAL is truncated. 5s.
	IdleAfter time.Duration
	// MaxWALBytes is the WAL file's bound: above it, Stats says so and
	// WALProblem fails (the readiness detail). It does not stop writes.
	// 64 MiB.
	MaxWALBytes int64
	// Off turns the checkpointer off and leaves SQLite's auto-checkpoint
	// on, for stores opened for a moment (a CLI command).
	Off bool
	// Logger reports failed checkpoints. Default: the store's.
	Logger *slog.Logger
}

func (o CheckpointOptions) withDefaults() CheckpointOptions {
	if o.Every <= 0 {
		o.Every = time.Second
	}
	if o.AfterWrites <= 0 {
		o.AfterWrites = 1000
	}
	if o.IdleAfter <= 0 {
		o.IdleAfter = 5 * time.Second
	}
	if o.MaxWALBytes <= 0 {
		o.MaxWALBytes = 64 << 20
	}
	return o
}

// Checkpointer is the on-behalf-of name of the checkpointer's holds of
// the writer.
const Checkpointer = "checkpointer"

// walFrameBytes is a WAL frame of a 4 KiB page (SQLite's default, which
// onebox keeps): the page and its 24-byte header.
const walFrameBytes = 4096 + 24

// checkpointLook is how often the checkpointer looks at the writes.
const checkpointLook = 100 * time.Millisecond

// Checkpoint is one checkpoint's result.
type Checkpoint struct {
	Mode     string // "passive" or "truncate"
	At       time.Time
	Duration time.Duration
	// Busy is true when it could not finish: a reader still needed part
	// of the WAL (or, for truncate, a write or reader was in the way).
	Busy bool
	// Frames is the WAL's length in frames, Copied how many of them are
	// in the database file now; -1 when SQLite did not say.
	Frames, Copied int64
	Err            error
}

// Result is "ok", "busy" or "error", the metrics' label.
func (c Checkpoint) Result() string {
	switch {
	case c.Err != nil:
		return "error"
	case c.Busy:
		return "busy"
	}
	return "ok"
}

// CheckpointCounts are the checkpoints run since New, by mode and
// result ("passive/ok", "truncate/busy"…).
type CheckpointCounts map[string]int64

// checkpointer runs the checkpoints of one store.
type checkpointer struct {
	o     CheckpointOptions
	db    *sql.DB // one connection, busy_timeout 0
	lock  *writeLock
	gate  *sync.RWMutex // the reader pool's
	walOf string
	log   *slog.Logger

	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	last   Checkpoint
	counts CheckpointCounts
}

func newCheckpointer(o CheckpointOptions, db *sql.DB, lock *writeLock, gate *sync.RWMutex, path string, log *slog.Logger) *checkpointer {
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return &checkpointer{
		o: o.withDefaults(), db: db, lock: lock, gate: gate, walOf: path + "-wal", log: log,
		stop: make(chan struct{}), done: make(chan struct{}), counts: CheckpointCounts{},
	}
}

func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTicker(checkpointLook)
	defer t.Stop()
	var seen uint64 // writes at the last passive checkpoint
	var lastPassive time.Time
	truncated := true // nothing to truncate before a write
	behind := false   // the last passive checkpoint left frames uncopied
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			writes := c.lock.marks.count.Load()
			lastWrite := time.Unix(0, c.lock.marks.last.Load())
			switch {
			case writes != seen && (writes-seen >= uint64(c.o.AfterWrites) || now.Sub(lastPassive) >= c.o.Every):
				seen, lastPassive, truncated = writes, now, false
				mode := "passive"
				if behind {
					mode = "passive-gated"
				}
				cp := c.checkpoint(mode)
				if mode == "passive-gated" {
					seen = c.lock.marks.count.Load() // its own hold is no write
				}
				// The WAL in use, not the file (which keeps its largest
				// size until truncated): a reader that was there when a
				// write came kept it from starting over.
				behind = cp.Frames*walFrameBytes > c.o.MaxWALBytes/2
			case !truncated && writes == seen && now.Sub(lastWrite) >= c.o.IdleAfter:
				// Only once per quiet spell: a failed one waits for the
				// next writes, and their passive checkpoint, to retry.
				truncated = true
				c.checkpoint("truncate")
				seen = c.lock.marks.count.Load() // its own hold is no write
			}
		}
	}
}

func (c *checkpointer) close() error {
	close(c.stop)
	<-c.done
	return c.db.Close()
}

// checkpoint runs one checkpoint of mode and records it.
func (c *checkpointer) checkpoint(mode string) Checkpoint {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cp := Checkpoint{Mode: mode, At: time.Now(), Frames: -1, Copied: -1}
	switch mode {
	case "truncate":
		// Never in front of a write: if one holds or waits for the
		// writer, the truncate waits for the next quiet spell.
		if !c.lock.tryLock(correlation.WithOnBehalfOf(ctx, Checkpointer), "wal_checkpoint_truncate") {
			cp.Busy = true
			break
		}
		cp.Busy, cp.Frames, cp.Copied, cp.Err = c.exec(ctx, "TRUNCATE")
		c.lock.unlock()
	case "passive-gated":
		// Reads that began one after another can keep a snapshot open
		// at every instant, and a passive checkpoint then never copies
		// the whole WAL, which cannot start over. Past half its bound,
		// the WAL is copied with the reader pool's reads held back: it
		// waits for those in flight (each at most MaxReadSnapshot),
		// writes never wait. Key reads are not held: each lasts
		// microseconds, or 100 ms for a shared snapshot, which writes end.
		c.gate.Lock()
		// The bulk of the copy, while writes go on, again while the
		// writes that came meanwhile were many.
		for pass, prev := 0, int64(0); pass < 4; pass++ {
			cp.Busy, cp.Frames, cp.Copied, cp.Err = c.exec(ctx, "PASSIVE")
			if cp.Err != nil || cp.Frames-prev < 64 {
				break
			}
			prev = cp.Frames
		}
		if cp.Err == nil {
			// Then the frames written meanwhile, with the writer held for
			// that moment (milliseconds: a hold of its own, named so),
			// so that the next write begins with the whole WAL copied
			// and no reader in it, and starts the WAL over.
			if err := c.lock.lock(correlation.WithOnBehalfOf(ctx, Checkpointer), "wal_checkpoint_tail"); err != nil {
				cp.Err = err
			} else {
				c.lock.flush()
				cp.Busy, cp.Frames, cp.Copied, cp.Err = c.exec(ctx, "PASSIVE")
				c.lock.unlock()
				w, deadline := c.lock.marks.count.Load(), time.Now().Add(time.Second)
				for c.lock.marks.count.Load() == w && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
		}
		c.gate.Unlock()
	default:
		cp.Busy, cp.Frames, cp.Copied, cp.Err = c.exec(ctx, "PASSIVE")
	}
	cp.Duration = time.Since(cp.At)
	if cp.Err != nil {
		c.log.Warn("sqlite: checkpoint failed", "mode", mode, "err", cp.Err.Error())
	}
	c.mu.Lock()
	c.last = cp
	c.counts[mode+"/"+cp.Result()]++
	c.mu.Unlock()
	return cp
}

func (c *checkpointer) exec(ctx context.Context, mode string) (busy bool, frames, copied int64, err error) {
	var b int
	err = c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&b, &frames, &copied)
	if err != nil {
		if isBusy(err) {
			return true, -1, -1, nil
		}
		return false, -1, -1, fmt.Errorf("sqlite: wal_checkpoint(%s): %w", mode, err)
	}
	return b != 0, frames, copied, nil
}

// walBytes is the WAL file's size; 0 when there is none.
func (c *checkpointer) walBytes() int64 {
	fi, err := os.Stat(c.walOf)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// WALStats are the WAL's size and the checkpoints' results.
type WALStats struct {
	Bytes    int64 // the WAL file's size now
	MaxBytes int64 // CheckpointOptions.MaxWALBytes
	Last     Checkpoint
	Counts   CheckpointCounts
	Off      bool // SQLite's auto-checkpoint does it
}

// WAL reads the WAL's size and the last checkpoint. It runs no query.
func (s *Store) WAL() WALStats {
	if s.ckpt == nil {
		return WALStats{Off: true}
	}
	c := s.ckpt
	c.mu.Lock()
	defer c.mu.Unlock()
	counts := make(CheckpointCounts, len(c.counts))
	for k, v := range c.counts {
		counts[k] = v
	}
	return WALStats{Bytes: c.walBytes(), MaxBytes: c.o.MaxWALBytes, Last: c.last, Counts: counts}
}

// WALProblem is the readiness detail: an error when the WAL is past its
// bound or the last checkpoint failed, nil otherwise.
func (s *Store) WALProblem(context.Context) error {
	w := s.WAL()
	var errs []error
	if !w.Off && w.Bytes > w.MaxBytes {
		errs = append(errs, fmt.Errorf("WAL is %d bytes, over its bound of %d (a reader holds an old snapshot, or checkpoints fail; see onebox_db_file_lock)", w.Bytes, w.MaxBytes))
	}
	if w.Last.Err != nil {
		errs = append(errs, fmt.Errorf("last %s checkpoint at %s failed: %w", w.Last.Mode, w.Last.At.Format(time.RFC3339), w.Last.Err))
	}
	return errors.Join(errs...)
}
