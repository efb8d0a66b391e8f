package sqlite

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

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
}

func newWriteLock(max int64) *writeLock {
	return &writeLock{max: max}
}

// lock takes the lock. It fails with store.ErrBusy if max writes are
// already waiting, and with ctx's error if ctx ended meanwhile.
func (l *writeLock) lock(ctx context.Context) error {
	if !l.mu.TryLock() {
		if l.waiting.Add(1) > l.max {
			l.waiting.Add(-1)
			return fmt.Errorf("sqlite: %d writes already waiting: %w", l.max, store.ErrBusy)
		}
		start := time.Now()
		l.mu.Lock()
		l.waiting.Add(-1)
		l.waits.Add(1)
		l.waitedNs.Add(int64(time.Since(start)))
	}
	if err := ctx.Err(); err != nil {
		l.mu.Unlock()
		return err
	}
	l.heldSince = time.Now()
	return nil
}

func (l *writeLock) unlock() {
	now := time.Now()
	l.heldNs.Add(int64(now.Sub(l.heldSince)))
	l.marks.done(now)
	l.mu.Unlock()
}

// held returns the time the lock was held in all, the writes in progress
// not counted.
func (l *writeLock) held() time.Duration { return time.Duration(l.heldNs.Load()) }

// waited returns how many lock calls had to wait, and for how long in all.
func (l *writeLock) waited() (int64, time.Duration) {
	return l.waits.Load(), time.Duration(l.waitedNs.Load())
}
