package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"onebox/correlation"
	"onebox/store"
)

// maxWriteWaiters bounds the writes queued for the writer's connection:
// about half a second of PATCHes. Past it a write fails at once with
// store.ErrBusy (503 and Retry-After), so a stalled disk cannot pile up
// requests without limit.
const maxWriteWaiters = 4096

// writeLock serialises the users of the writer's one connection.
// database/sql's pool queues them as well, but it hands the connection to
// its longest waiter, which must be scheduled before it can use it: with
// 64 concurrent PATCHes the writer sat idle between statements and the
// server used 1.25 of 2 cores. A sync.Mutex spins before it parks and
// lets a goroutine that is already running take it: 6.1k -> 10.9k
// PATCH/s. A channel-based lock that a waiter could leave on its context
// gave back most of that (8.1k), so the wait is not cancellable: instead
// a write whose context ended while it waited gives the lock back at once,
// and the queue is bounded.
type writeLock struct {
	mu      sync.Mutex
	waiting atomic.Int64
	max     int64
	// The waits, for Stats: writers now queue here rather than in
	// database/sql's pool, whose own wait counters stay near zero.
	waits    atomic.Int64
	waitedNs atomic.Int64
	// heldNs is the time the lock was held in all, and since when it is
	// held now (written under mu): the writer's busy share, which says
	// how near one writer is to its limit, as waits alone cannot.
	heldNs    atomic.Int64
	heldSince time.Time
	// marks counts the lock's releases, each after a write finished
	// (or failed), for the key reader's snapshots.
	marks writeMarks

	// The holder now: written by the goroutine that holds mu, under
	// holderMu too, so that Stats can read it while a write runs.
	holderMu sync.Mutex
	holder   WriterHolder
	waited   time.Duration // how long the holder queued for mu
	// begun is set once the holder's BEGIN IMMEDIATE has the file's
	// lock: until then a transaction waits on another process.
	begun atomic.Bool
	// onHold, when set, gets every hold once it ended.
	onHold func(WriterHold)
}

// WriterHold is one hold of the writer, as Options.OnWriterHold gets it.
type WriterHold struct {
	// Query is the store's name for the statement or transaction.
	Query string
	// OnBehalfOf is the route or job kind whose context it ran under
	// (correlation.OnBehalfOf), "" for the store's own work.
	OnBehalfOf string
	Waited     time.Duration // how long it queued for the writer first
	Held       time.Duration // how long it held the writer
	// Foreign is the part of Held a transaction's BEGIN IMMEDIATE
	// waited for SQLite's lock: another process held the database.
	Foreign time.Duration
	Queued  int // writes waiting for the writer when it let go
}

// WriterHolder is who holds the writer now.
type WriterHolder struct {
	Query, OnBehalfOf string
	Since             time.Time // zero: nobody holds it
	// Beginning is true while the holder's BEGIN IMMEDIATE waits for
	// SQLite's lock, which only another process can hold.
	Beginning bool
}

func newWriteLock(max int64) *writeLock {
	l := &writeLock{max: max}
	l.begun.Store(true)
	return l
}

// lock takes the lock for the query named name. It fails with
// store.ErrBusy if max writes are already waiting, and with ctx's error
// if ctx ended meanwhile.
func (l *writeLock) lock(ctx context.Context, name string) error {
	var waited time.Duration
	if !l.mu.TryLock() {
		if l.waiting.Add(1) > l.max {
			l.waiting.Add(-1)
			return fmt.Errorf("sqlite: %d writes already waiting: %w", l.max, store.ErrBusy)
		}
		start := time.Now()
		l.mu.Lock()
		waited = time.Since(start)
		l.waiting.Add(-1)
		l.waits.Add(1)
		l.waitedNs.Add(int64(waited))
	}
	if err := ctx.Err(); err != nil {
		l.mu.Unlock()
		return err
	}
	l.took(ctx, name, waited)
	return nil
}

// tryLock takes the lock if nobody holds it or waits for it.
func (l *writeLock) tryLock(ctx context.Context, name string) bool {
	if l.waiting.Load() > 0 || !l.mu.TryLock() {
		return false
	}
	l.took(ctx, name, 0)
	return true
}

// took records the new holder.
func (l *writeLock) took(ctx context.Context, name string, waited time.Duration) {
	l.heldSince = time.Now()
	l.waited = waited
	l.holderMu.Lock()
	l.holder = WriterHolder{Query: name, OnBehalfOf: correlation.OnBehalfOf(ctx), Since: l.heldSince}
	l.holderMu.Unlock()
}

// beginning marks the holder's BEGIN IMMEDIATE as under way; began
// returns how long it took since the lock was taken.
func (l *writeLock) beginning() { l.begun.Store(false) }

func (l *writeLock) began() time.Duration {
	l.begun.Store(true)
	return time.Since(l.heldSince)
}

func (l *writeLock) unlock() { l.unlockForeign(0) }

// unlockForeign releases the lock; foreign is the time the hold waited
// for another process's lock.
func (l *writeLock) unlockForeign(foreign time.Duration) {
	now := time.Now()
	held := now.Sub(l.heldSince)
	l.heldNs.Add(int64(held))
	l.marks.done(now)
	l.holderMu.Lock()
	h := WriterHold{Query: l.holder.Query, OnBehalfOf: l.holder.OnBehalfOf, Waited: l.waited, Held: held, Foreign: foreign, Queued: int(l.waiting.Load())}
	l.holder = WriterHolder{}
	l.holderMu.Unlock()
	l.begun.Store(true)
	l.mu.Unlock()
	// After the release: the next writer need not wait for the metrics.
	if l.onHold != nil {
		l.onHold(h)
	}
}

// current returns who holds the lock now, and how many writes wait.
func (l *writeLock) current() (WriterHolder, int) {
	l.holderMu.Lock()
	h := l.holder
	l.holderMu.Unlock()
	h.Beginning = !h.Since.IsZero() && !l.begun.Load()
	return h, int(l.waiting.Load())
}

// held returns the time the lock was held in all, the writes in progress
// not counted.
func (l *writeLock) held() time.Duration { return time.Duration(l.heldNs.Load()) }

// waited returns how many lock calls had to wait, and for how long in all.
func (l *writeLock) waitStats() (int64, time.Duration) {
	return l.waits.Load(), time.Duration(l.waitedNs.Load())
}

// HoldWriter holds the writer for d, or until ctx ends, in a transaction
// named "hold_writer" that writes nothing: the drill of a job that keeps
// every other write waiting (ops/drill). The hold is recorded as any
// other, on behalf of ctx's route or job kind.
func (s *Store) HoldWriter(ctx context.Context, d time.Duration) error {
	return s.inTx(ctx, "hold_writer", func(*sql.Tx) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}
