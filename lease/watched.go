package lease

import (
	"context"
	"sync"
)

// Watched is the half of a Held that the backends whose lease can be
// lost share: a watcher that marks the lease lost, and a release that
// stops the watcher before freeing the lease, so that the two never use
// the backend's connection at once.
type Watched struct {
	lost     chan struct{}
	lostOnce sync.Once
	stop     context.CancelFunc
	stopped  chan struct{}
	release  sync.Once
}

// Watch runs watch in a goroutine of its own with a context that
// ReleaseWith ends; watch calls MarkLost when the lease is no longer
// surely held.
func Watch(watch func(ctx context.Context, w *Watched)) *Watched {
	ctx, stop := context.WithCancel(context.Background())
	w := &Watched{lost: make(chan struct{}), stop: stop, stopped: make(chan struct{})}
	go func() {
		defer close(w.stopped)
		watch(ctx, w)
	}()
	return w
}

// Lost is closed once the lease is lost or released.
func (w *Watched) Lost() <-chan struct{} { return w.lost }

// MarkLost closes Lost; later calls do nothing.
func (w *Watched) MarkLost() { w.lostOnce.Do(func() { close(w.lost) }) }

// ReleaseWith stops the watcher, waits until it has returned, frees the
// lease with free and closes Lost, the first time it is called; later
// calls return nil.
func (w *Watched) ReleaseWith(free func() error) error {
	var err error
	w.release.Do(func() {
		w.stop()
		<-w.stopped
		err = free()
		w.MarkLost()
	})
	return err
}
