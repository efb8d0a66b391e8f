// Package lease lets work that must run on one instance at a time (the
// outbox relay, the retention sweeps) run on exactly one of several: the
// instance that holds the lease runs it, the others wait, and the lease
// passes to one of them when its holder stops (Release) or dies (its
// connection ends, or it stops renewing for a TTL).
//
// Implementations: lease/postgres (a session advisory lock on a
// connection of its own), lease/nats (a key in a JetStream key-value
// bucket with a TTL), lease/local (one process). lease/leasetest is the
// suite each passes.
//
// A lease is not a fence: a holder cut off from the backend learns it
// lost the lease only at its next check (see each implementation), so for
// that long two holders may run. The work run under a lease must stay
// correct when that happens (the relay is at least once and the broker
// drops duplicates; a sweep's deletes do not conflict); the lease only
// keeps it from running everywhere all the time.
package lease

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Locker takes leases by name. Holders that share a backend (and, for
// PostgreSQL, a schema) and a name exclude each other.
type Locker interface {
	// Acquire blocks until this holder has the lease named name and
	// returns it, or returns ctx's error when ctx ends first. Any other
	// error means the backend failed (the caller retries).
	Acquire(ctx context.Context, name string) (Held, error)
}

// Held is a lease this holder has.
type Held interface {
	// Lost is closed when the lease is no longer surely held: its
	// connection ended, or a renewal failed for too long. Work under
	// the lease stops then.
	Lost() <-chan struct{}
	// Release gives the lease up so another holder may take it at
	// once. After Release, Lost is closed. It is safe to call twice.
	Release(ctx context.Context) error
}

// ErrLost is the cause of the context Run gives its work when the lease
// was lost rather than ctx ended.
var ErrLost = errors.New("lease lost")

// RunOptions configure Run. Zero fields take the defaults.
type RunOptions struct {
	Logger *slog.Logger // default: discard
	// Retry is the wait after the backend failed before asking again.
	// Default 1s.
	Retry time.Duration
}

// Run runs work whenever this instance holds the lease named name, until
// ctx ends: it acquires the lease, runs work with a context that ends
// when the lease is lost, releases the lease when work returns, and
// waits for it again. It returns nil when ctx ends, or work's error when
// work fails while the lease is held.
func Run(ctx context.Context, l Locker, name string, o RunOptions, work func(ctx context.Context) error) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	for ctx.Err() == nil {
		h, err := l.Acquire(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("lease: cannot ask for it, trying again", "lease", name, "err", err.Error(), "retry", o.Retry.String())
			sleep(ctx, o.Retry)
			continue
		}
		log.Info("lease: held, running", "lease", name)
		err, lost := runHeld(ctx, h, work)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if rerr := h.Release(rctx); rerr != nil && !lost {
			log.Warn("lease: release failed; another holder takes it when it expires", "lease", name, "err", rerr.Error())
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case lost:
			log.Warn("lease: lost, stopped; waiting for it again", "lease", name)
		case err != nil:
			return err
		}
	}
	return nil
}

// runHeld runs work until it returns, the lease is lost, or ctx ends.
func runHeld(ctx context.Context, h Held, work func(ctx context.Context) error) (err error, lost bool) {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-h.Lost():
			cancel(ErrLost)
		case <-done:
		}
	}()
	err = work(wctx)
	return err, errors.Is(context.Cause(wctx), ErrLost)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
