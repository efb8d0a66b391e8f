package app

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// lazyDeadline is context.WithDeadline(parent, deadline) that makes its
// timer, and its link to parent's cancellation, only when Done or Err is
// first called. A request served from the cache never calls them, and
// for such a request making and stopping the timer was 4% of its CPU.
// Deadline answers without arming, so code that only looks at the
// deadline (to pass it on, say) costs nothing either.
type lazyDeadline struct {
	parent   context.Context
	deadline time.Time

	armed atomic.Pointer[context.Context] // set once, under mu
	mu    sync.Mutex
	stop  context.CancelFunc // of *armed; nil until armed
	ended bool               // end was called
}

// withLazyDeadline returns the context and a function that cancels it,
// as context.WithDeadline does.
func withLazyDeadline(parent context.Context, deadline time.Time) (*lazyDeadline, context.CancelFunc) {
	c := &lazyDeadline{parent: parent, deadline: deadline}
	return c, c.end
}

func (c *lazyDeadline) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *lazyDeadline) Done() <-chan struct{} { return c.real().Done() }
func (c *lazyDeadline) Err() error            { return c.real().Err() }

// Value asks the armed context once there is one: the context package
// finds the cancellation of a parent through Value, and so links a child
// such as database/sql's to this one without a goroutine.
func (c *lazyDeadline) Value(key any) any {
	if p := c.armed.Load(); p != nil {
		return (*p).Value(key)
	}
	return c.parent.Value(key)
}

// real returns the armed context, arming it on first use. Once end has
// been called it is a cancelled one, as WithDeadline's would be.
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
	if c.ended {
		cancel()
	}
	c.stop = cancel
	c.armed.Store(&ctx)
	return ctx
}

func (c *lazyDeadline) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	if c.stop != nil {
		c.stop()
	}
}
