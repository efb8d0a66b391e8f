// Package lazyctx gives contexts with a deadline whose timer is made only
// when something waits on them.
package lazyctx

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// lazyDeadline is context.WithDeadline(parent, deadline) that makes its
// timer, and its link to parent's cancellation, only when Done is first
// called. On onebox's request path most contexts with a deadline are
// never waited on (a read served from the cache; a read by key, which
// runs detached from cancellation), and making and stopping the timer
// was 4% of a cached read's CPU. Deadline and Err answer without arming.
type lazyDeadline struct {
	parent   context.Context
	deadline time.Time

	armed  atomic.Pointer[context.Context] // set once, under mu
	mu     sync.Mutex
	stop   context.CancelFunc // of *armed; nil until armed
	endErr error              // Err as of the CancelFunc's call; nil before
}

// WithDeadline is context.WithDeadline with a lazy timer.
func WithDeadline(parent context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	c := &lazyDeadline{parent: parent, deadline: deadline}
	return c, c.end
}

// WithTimeout is context.WithTimeout with a lazy timer.
func WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return WithDeadline(parent, time.Now().Add(d))
}

func (c *lazyDeadline) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *lazyDeadline) Done() <-chan struct{} { return c.real().Done() }

// Err is what the armed context's Err would be, without arming it.
func (c *lazyDeadline) Err() error {
	if p := c.armed.Load(); p != nil {
		return (*p).Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.endErr != nil {
		return c.endErr
	}
	return c.liveErr()
}

// liveErr is Err while c has not ended: the parent's error, else
// DeadlineExceeded once the deadline has passed.
func (c *lazyDeadline) liveErr() error {
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
func (c *lazyDeadline) Value(key any) any {
	if p := c.armed.Load(); p != nil {
		return (*p).Value(key)
	}
	return c.parent.Value(key)
}

// real returns the armed context, arming it on first use. Once c has
// ended it is a cancelled one, as WithDeadline's would be.
func (c *lazyDeadline) real() context.Context {
	if p := c.armed.Load(); p != nil {
		return *p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.armed.Load(); p != nil {
		return *p
	}
	ctx, cancel := context.WithDeadline(c.parent, c.deadline)
	if c.endErr != nil {
		cancel()
	}
	c.stop = cancel
	c.armed.Store(&ctx)
	return ctx
}

func (c *lazyDeadline) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.endErr == nil {
		if c.endErr = c.liveErr(); c.endErr == nil {
			c.endErr = context.Canceled
		}
	}
	if c.stop != nil {
		c.stop()
	}
}
