// Package lazyctx gives contexts with a deadline whose timer is made only
// when something waits on them.
package lazyctx

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Deadline is context.WithDeadline(parent, deadline) that makes its
// timer, and its link to parent's cancellation, only when Done is first
// called. On onebox's request path most contexts with a deadline are
// never waited on (a read served from the cache; a read by key, which
// runs detached from cancellation), and making and stopping the timer
// was 4% of a cached read's CPU. Deadline and Err answer without arming.
type Deadline struct {
	parent   context.Context
	deadline time.Time

	armed atomic.Pointer[context.Context] // set once, under mu
	mu    sync.Mutex
	stop  context.CancelFunc // of *armed; nil until armed
	// err is the first non-nil Err given before arming (or fixed by the
	// CancelFunc). Once set it is the answer for good, as a context's
	// Err must not change once it is non-nil; arming then gives an
	// ended context with this error.
	err error
}

// WithDeadline is context.WithDeadline with a lazy timer.
func WithDeadline(parent context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	c := &Deadline{parent: parent, deadline: deadline}
	return c, c.Cancel
}

// WithTimeout is context.WithTimeout with a lazy timer.
func WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return WithDeadline(parent, time.Now().Add(d))
}

// Timeout is WithTimeout returning the context itself, whose Cancel is
// the CancelFunc: on a request path the func value WithTimeout returns
// is one more allocation.
func Timeout(parent context.Context, d time.Duration) *Deadline {
	return &Deadline{parent: parent, deadline: time.Now().Add(d)}
}

func (c *Deadline) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *Deadline) Done() <-chan struct{} { return c.real().Done() }

// Err is what the armed context's Err would be, without arming it.
func (c *Deadline) Err() error {
	if p := c.armed.Load(); p != nil {
		return (*p).Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.armed.Load(); p != nil {
		return (*p).Err()
	}
	if c.err == nil {
		c.err = c.liveErr()
	}
	return c.err
}

// liveErr is Err while c has not ended: the parent's error, else
// DeadlineExceeded once the deadline has passed.
func (c *Deadline) liveErr() error {
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value asks the armed context once there is one: the context package
// finds the cancellation of a parent through Value, and so links a child
// such as database/sql's to this one without a goroutine.
func (c *Deadline) Value(key any) any {
	if p := c.armed.Load(); p != nil {
		return (*p).Value(key)
	}
	return c.parent.Value(key)
}

// real returns the armed context, arming it on first use: a
// WithDeadline context, or, once Err has been given, an ended one that
// keeps that error.
func (c *Deadline) real() context.Context {
	if p := c.armed.Load(); p != nil {
		return *p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.armed.Load(); p != nil {
		return *p
	}
	var ctx context.Context
	if c.err != nil {
		done := make(chan struct{})
		close(done)
		ctx, c.stop = &ended{parent: c.parent, deadline: c.deadline, err: c.err, done: done}, func() {}
	} else {
		ctx, c.stop = context.WithDeadline(c.parent, c.deadline)
	}
	c.armed.Store(&ctx)
	return ctx
}

// Cancel ends the context, as its CancelFunc does; calling it again does
// nothing.
func (c *Deadline) Cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stop != nil {
		c.stop()
		return
	}
	if c.err == nil {
		if c.err = c.liveErr(); c.err == nil {
			c.err = context.Canceled
		}
	}
}

// ended is a context that is over, with err.
type ended struct {
	parent   context.Context // for Value
	deadline time.Time
	err      error
	done     chan struct{} // closed
}

func (e *ended) Deadline() (time.Time, bool) { return e.deadline, true }
func (e *ended) Done() <-chan struct{}       { return e.done }
func (e *ended) Err() error                  { return e.err }
func (e *ended) Value(key any) any           { return e.parent.Value(key) }
