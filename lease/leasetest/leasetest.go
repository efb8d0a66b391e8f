// Package leasetest is the suite every lease.Locker passes: one holder at
// a time per name, handed over on Release, and on a holder's death.
package leasetest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"onebox/lease"
)

// NewHolder returns the Locker of a new instance that shares its backend
// with every other the same function returns, and kill, which ends that
// instance as a crash would (its connections drop, nothing is released),
// or nil when a holder cannot die alone (one process).
type NewHolder func(t *testing.T) (l lease.Locker, kill func())

// Options tell the suite what to expect of a backend.
type Options struct {
	// Handover is the most a dead holder's lease takes to pass to a
	// waiting one: the TTL, or how long the server takes to see the
	// connection gone. The suite waits this plus 10s.
	Handover time.Duration
}

var names atomic.Int64

// name is a lease name of the test's own, so tests sharing a backend do
// not contend.
func name(t *testing.T) string {
	return fmt.Sprintf("leasetest-%d-%d", time.Now().UnixNano(), names.Add(1))
}

// Run runs the suite.
func Run(t *testing.T, newHolder NewHolder, o Options) {
	deadline := o.Handover + 10*time.Second
	t.Run("OneHolderAtATime", func(t *testing.T) {
		t.Parallel()
		a, _ := newHolder(t)
		b, _ := newHolder(t)
		n := name(t)
		h := mustAcquire(t, a, n, deadline)
		defer h.Release(context.Background())
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		if h2, err := b.Acquire(ctx, n); !errors.Is(err, context.DeadlineExceeded) {
			if h2 != nil {
				h2.Release(context.Background())
			}
			t.Fatalf("second holder's Acquire = %v, want it to wait until its context ends", err)
		}
	})
	t.Run("NamesAreIndependent", func(t *testing.T) {
		t.Parallel()
		a, _ := newHolder(t)
		b, _ := newHolder(t)
		h := mustAcquire(t, a, name(t), deadline)
		defer h.Release(context.Background())
		mustAcquire(t, b, name(t), deadline).Release(context.Background())
	})
	t.Run("ReleaseHandsOver", func(t *testing.T) {
		t.Parallel()
		a, _ := newHolder(t)
		b, _ := newHolder(t)
		n := name(t)
		h := mustAcquire(t, a, n, deadline)
		got := acquireAsync(t, b, n, deadline)
		if err := h.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := h.Release(t.Context()); err != nil {
			t.Fatalf("second Release: %v", err)
		}
		waitClosed(t, "Lost after Release", h.Lost(), deadline)
		h2 := wait(t, got)
		defer h2.Release(context.Background())
		select {
		case <-h2.Lost():
			t.Fatal("new holder's lease lost at once")
		default:
		}
	})
	t.Run("DeathHandsOver", func(t *testing.T) {
		t.Parallel()
		a, kill := newHolder(t)
		if kill == nil {
			t.Skip("holders of this backend cannot die alone")
		}
		b, _ := newHolder(t)
		n := name(t)
		h := mustAcquire(t, a, n, deadline)
		got := acquireAsync(t, b, n, deadline)
		kill()
		waitClosed(t, "dead holder's Lost", h.Lost(), deadline)
		wait(t, got).Release(context.Background())
	})
	t.Run("RunStopsWorkWhenItsHolderDies", func(t *testing.T) {
		t.Parallel()
		a, kill := newHolder(t)
		if kill == nil {
			t.Skip("holders of this backend cannot die alone")
		}
		started, stopped := make(chan struct{}), make(chan error, 1)
		go lease.Run(t.Context(), a, name(t), lease.RunOptions{Retry: 50 * time.Millisecond}, func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return nil
		})
		waitClosed(t, "work started", started, deadline)
		kill()
		if err := waitErr(t, stopped, deadline); !errors.Is(err, lease.ErrLost) {
			t.Fatalf("work's context ended by %v, want lease.ErrLost", err)
		}
	})
	t.Run("RunHandsOverWhenItsInstanceStops", func(t *testing.T) {
		t.Parallel()
		a, _ := newHolder(t)
		b, _ := newHolder(t)
		n := name(t)
		var running, most atomic.Int64
		started := make(chan string, 2)
		work := func(who string) func(context.Context) error {
			return func(ctx context.Context) error {
				r := running.Add(1)
				defer running.Add(-1)
				for m := most.Load(); r > m && !most.CompareAndSwap(m, r); m = most.Load() {
				}
				started <- who
				<-ctx.Done()
				return nil
			}
		}
		ctxA, stopA := context.WithCancel(t.Context())
		doneA := make(chan error, 1)
		go func() { doneA <- lease.Run(ctxA, a, n, lease.RunOptions{Retry: 50 * time.Millisecond}, work("a")) }()
		if who := waitString(t, started, deadline); who != "a" {
			t.Fatalf("%s started first, want a", who)
		}
		ctxB, stopB := context.WithCancel(t.Context())
		defer stopB()
		doneB := make(chan error, 1)
		go func() { doneB <- lease.Run(ctxB, b, n, lease.RunOptions{Retry: 50 * time.Millisecond}, work("b")) }()
		select {
		case who := <-started:
			t.Fatalf("%s started while a held the lease", who)
		case <-time.After(300 * time.Millisecond):
		}
		stopA()
		if err := waitErr(t, doneA, deadline); err != nil {
			t.Fatalf("Run a: %v", err)
		}
		if who := waitString(t, started, deadline); who != "b" {
			t.Fatalf("%s started, want b", who)
		}
		stopB()
		if err := waitErr(t, doneB, deadline); err != nil {
			t.Fatalf("Run b: %v", err)
		}
		if m := most.Load(); m != 1 {
			t.Fatalf("%d ran at once, want 1", m)
		}
	})
}

func mustAcquire(t *testing.T, l lease.Locker, name string, d time.Duration) lease.Held {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	h, err := l.Acquire(ctx, name)
	if err != nil {
		t.Fatalf("Acquire %s: %v", name, err)
	}
	return h
}

type result struct {
	h   lease.Held
	err error
}

func acquireAsync(t *testing.T, l lease.Locker, name string, d time.Duration) <-chan result {
	ch := make(chan result, 1)
	ctx, cancel := context.WithTimeout(t.Context(), d)
	go func() {
		defer cancel()
		h, err := l.Acquire(ctx, name)
		ch <- result{h, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan result) lease.Held {
	t.Helper()
	r := <-ch // acquireAsync's deadline bounds it
	if r.err != nil {
		t.Fatalf("waiting holder's Acquire: %v", r.err)
	}
	return r.h
}

func waitClosed(t *testing.T, what string, ch <-chan struct{}, d time.Duration) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s not closed after %s", what, d)
	}
}

func waitString(t *testing.T, ch <-chan string, d time.Duration) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(d):
		t.Fatalf("no work started within %s", d)
		return ""
	}
}

func waitErr(t *testing.T, ch <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatalf("Run did not return within %s of its context ending", d)
		return nil
	}
}
