package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
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

	// open is the write transaction that the holders of the lock share
	// until it commits (group commit, see group); nil when none is open.
	// Only the holder reads or writes it.
	open *group
	// groupMax and groupAge bound a group: members, and time since its
	// BEGIN, past which the next holder commits instead of handing on.
	groupMax int
	groupAge time.Duration
	// commits and members count the groups committed and the writes they
	// carried, for Stats: writes per commit.
	commits atomic.Int64
	members atomic.Int64
}

// group is one write transaction shared by several writes that queued
// for the writer one after another: group commit. Each write runs in a
// savepoint of its own, released when it succeeds and rolled back when
// it fails, so a failing write takes only its own changes back. A write
// that succeeded does not commit itself while others wait for the lock:
// it hands the lock on and waits for the group's COMMIT, which the last
// of them runs (the one that finds nobody waiting, or the group full).
// Every write still returns only after the COMMIT that holds its rows,
// as durable as its own COMMIT would have made it, and the writes are
// serialised in lock order as before; what they share is the COMMIT,
// whose WAL write (one frame per page, and pages the writes share
// written once) was a quarter of an enqueue's time, and BEGIN.
type group struct {
	tx      *sql.Tx
	cancel  context.CancelFunc // the transaction's context, not a request's
	began   time.Time
	members int
	done    chan struct{} // closed once err is set
	err     error         // the COMMIT's, or what broke the transaction
	// reports are the OnQuery reports of the statements of the write
	// that holds the writer, kept until it lets go (Store.observeTx).
	reports []report
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

// Group bounds (writeLock.groupMax, groupAge): a write waits for the
// COMMIT of at most groupMaxMembers writes, and at most groupMaxAge plus
// the one write then running after the group's BEGIN.
const (
	groupMaxMembers = 64
	groupMaxAge     = 2 * time.Millisecond
)

func newWriteLock(max int64) *writeLock {
	l := &writeLock{max: max, groupMax: groupMaxMembers, groupAge: groupMaxAge}
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
		l.settle() // a group handed on to this caller must still commit
		l.mu.Unlock()
		return err
	}
	l.took(ctx, name, waited)
	return nil
}

// tryLock takes the lock if nobody holds it or waits for it. No group is
// open then: a group outlives a hold only when handed on to a write that
// waits, and a waiter leaves the count only once it holds the lock.
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

// settle is the end of a hold while a group is open: it leaves the
// group open for the next holder if writes wait and the group has room,
// or commits it.
func (l *writeLock) settle() {
	g := l.open
	if g == nil || (g.members < l.groupMax && time.Since(g.began) < l.groupAge && l.writersComing()) {
		return
	}
	l.end(nil)
}

// writersComing reports whether writes wait for the lock, after letting
// the runnable ones reach it: the writers of the last group, woken by
// its COMMIT, are about to write again.
func (l *writeLock) writersComing() bool {
	if l.waiting.Load() == 0 {
		runtime.Gosched()
	}
	return l.waiting.Load() > 0
}

// flush commits the open group, if any, before the holder uses the
// connection on its own: an autocommit statement, a transaction that
// must not be shared, or a checkpoint.
func (l *writeLock) flush() {
	if l.open != nil {
		l.end(nil)
	}
}

// end ends the open group: its COMMIT, or with broke (a write broke its
// transaction: a savepoint could not be released or rolled back, as
// when SQLite rolled the whole transaction back) a rollback, so that
// every write of the group gets broke and none committed. The end is
// marked for the key reader before the writes learn the outcome: a
// write that returns must find its rows in the next snapshot.
func (l *writeLock) end(broke error) {
	g := l.open
	l.open = nil
	if g.err = broke; broke == nil {
		g.err = g.tx.Commit()
		l.commits.Add(1)
		l.members.Add(int64(g.members))
	} else {
		_ = g.tx.Rollback()
	}
	g.cancel()
	l.marks.done(time.Now())
	close(g.done)
}

// groupStats returns how many groups committed and how many writes
// they carried, since New.
func (l *writeLock) groupStats() (commits, members int64) {
	return l.commits.Load(), l.members.Load()
}

// unlockForeign releases the lock, committing or handing on an open
// group (settle); foreign is the time the hold waited for another
// process's lock.
func (l *writeLock) unlockForeign(foreign time.Duration) {
	grouped := l.open != nil
	l.settle()
	now := time.Now()
	held := now.Sub(l.heldSince)
	l.heldNs.Add(int64(held))
	if !grouped {
		// A write of its own (a group's are marked at its end).
		l.marks.done(now)
	}
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
	return s.inTxAlone(ctx, "hold_writer", func(*sql.Tx) error {
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
