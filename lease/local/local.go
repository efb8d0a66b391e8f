// Package local is a lease.Locker within one process: on one box (the
// SQLite store, no broker) there is one instance, so its lease is a
// mutex per name.
package local

import (
	"context"
	"sync"

	"onebox/lease"
)

// Locker hands each name's lease to one holder of this process at a time.
type Locker struct {
	mu    sync.Mutex
	names map[string]chan struct{} // a token per name: taken = held
}

var _ lease.Locker = (*Locker)(nil)

// New returns a Locker with every lease free.
func New() *Locker { return &Locker{names: map[string]chan struct{}{}} }

func (l *Locker) token(name string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.names[name]
	if !ok {
		t = make(chan struct{}, 1)
		t <- struct{}{}
		l.names[name] = t
	}
	return t
}

// Acquire waits for name's lease. It fails only when ctx ends.
func (l *Locker) Acquire(ctx context.Context, name string) (lease.Held, error) {
	t := l.token(name)
	select {
	case <-t:
		return &held{token: t, lost: make(chan struct{})}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type held struct {
	once  sync.Once
	token chan struct{}
	lost  chan struct{}
}

// Lost is closed by Release only: a process does not lose its own mutex.
func (h *held) Lost() <-chan struct{} { return h.lost }

func (h *held) Release(context.Context) error {
	h.once.Do(func() {
		close(h.lost)
		h.token <- struct{}{}
	})
	return nil
}
