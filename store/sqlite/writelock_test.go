package sqlite

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"onebox/store"
)

// Under contention every lock is granted, one holder at a time.
func TestWriteLockExclusive(t *testing.T) {
	t.Parallel()
	l := newWriteLock(maxWriteWaiters)
	var (
		wg      sync.WaitGroup
		holders int // guarded by l
		n       int // guarded by l
	)
	for range 16 {
		wg.Go(func() {
			for range 2000 {
				if err := l.lock(t.Context(), "test"); err != nil {
					t.Errorf("lock: %v", err)
					return
				}
				holders++
				if holders != 1 {
					t.Errorf("%d holders at once", holders)
				}
				n++
				holders--
				l.unlock()
			}
		})
	}
	wg.Wait()
	if n != 16*2000 {
		t.Fatalf("%d critical sections ran, want %d", n, 16*2000)
	}
}

// A write whose context ends while it waits gives the lock back as soon
// as it gets it, and reports the context's error.
func TestWriteLockExpiredWaiter(t *testing.T) {
	t.Parallel()
	l := newWriteLock(maxWriteWaiters)
	if err := l.lock(t.Context(), "test"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	got := make(chan error)
	go func() { got <- l.lock(ctx, "test") }()
	<-ctx.Done()
	l.unlock()
	if err := <-got; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock of an expired waiter: %v, want context.DeadlineExceeded", err)
	}
	if !l.mu.TryLock() {
		t.Fatal("the expired waiter kept the lock")
	}
}

// Past max waiters a write fails at once with store.ErrBusy.
func TestWriteLockBoundedQueue(t *testing.T) {
	t.Parallel()
	l := newWriteLock(2)
	if err := l.lock(t.Context(), "test"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := l.lock(t.Context(), "test"); err != nil {
				t.Errorf("queued waiter: %v", err)
				return
			}
			l.unlock()
		})
	}
	for l.waiting.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	if err := l.lock(t.Context(), "test"); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("third waiter: %v, want store.ErrBusy", err)
	}
	l.unlock()
	wg.Wait()
}

// Ping does not wait for the writer's lock, whose wait cannot be
// cancelled: readiness must answer within its deadline.
func TestPingSkipsWriteLock(t *testing.T) {
	t.Parallel()
	s, err := New(t.Context(), Options{Path: t.TempDir() + "/onebox.db"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.writer.lock.lock(t.Context(), "test"); err != nil {
		t.Fatal(err)
	}
	defer s.writer.lock.unlock()
	got := make(chan error, 1)
	go func() { got <- s.Ping(t.Context()) }()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("Ping while a write holds the lock: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Ping waits for the writer's lock")
	}
}

// A write that waits for the lock, and the time the lock is held, show in Stats, which the writer-wait
// metric and the dashboard's database judgement read.
func TestWriteLockWaitInStats(t *testing.T) {
	t.Parallel()
	s, err := New(t.Context(), Options{Path: t.TempDir() + "/onebox.db"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := s.Stats()
	if err := s.writer.lock.lock(t.Context(), "test"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- s.DeleteSession(t.Context(), "no-such-hash") }()
	for s.writer.lock.waiting.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	s.writer.lock.unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	if after.WriterWaitCount <= before.WriterWaitCount || after.WriterWait-before.WriterWait < 20*time.Millisecond {
		t.Fatalf("Stats after a 20ms wait for the writer: %d waits, %v; before %d, %v",
			after.WriterWaitCount, after.WriterWait, before.WriterWaitCount, before.WriterWait)
	}
	// The lock was held 20ms by the test, then by the delete: both are
	// the writer's busy time.
	if busy := after.WriterBusy - before.WriterBusy; busy < 20*time.Millisecond {
		t.Fatalf("WriterBusy grew by %v over a 20ms hold", busy)
	}
}
