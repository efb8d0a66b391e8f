// Package broadcast keeps the in-process caches of several instances
// coherent: a Delete on one instance is sent over a notify.Bus, and every
// other instance drops its own entry, in about a network round trip
// (BenchmarkBroadcast). The bus delivers at most once: an invalidation
// lost (the hub was down, or a message was dropped) leaves the other
// instances serving the old entry until its TTL ends, which bounds it.
package broadcast

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"sync"

	"onebox/cache"
	"onebox/notify"
)

// Subject is the bus subject invalidations travel on.
const Subject = "cache.invalidate"

var (
	_ cache.Cache   = (*Cache)(nil)
	_ cache.Watcher = (*Cache)(nil)
)

// Options configure a Cache.
type Options struct {
	// OnError, if set, is called when an invalidation could not be sent;
	// the other instances then serve their entry until its TTL ends.
	OnError func(key string, err error)
}

// Cache is a cache.Cache whose Deletes reach every instance's Cache on
// the same bus.
type Cache struct {
	cache.Cache
	bus    notify.Bus
	origin string // this instance, so that it ignores its own sends
	opts   Options
	stop   func()

	mu       sync.Mutex
	watchers []func(key string)
}

// New wraps c, which should be in process (a shared cache needs no
// broadcast), and starts listening on bus.
func New(c cache.Cache, bus notify.Bus, o Options) *Cache {
	b := &Cache{Cache: c, bus: bus, origin: rand.Text(), opts: o}
	b.stop = bus.Listen(Subject, b.receive)
	return b
}

// Delete removes key here, then tells the other instances. A failed send
// is reported to OnError, not returned: the entry here is gone, and the
// TTL bounds the others.
func (b *Cache) Delete(ctx context.Context, key string) error {
	if err := b.Cache.Delete(ctx, key); err != nil {
		return err
	}
	if err := b.bus.Send(ctx, Subject, []byte(b.origin+" "+key)); err != nil && b.opts.OnError != nil {
		b.opts.OnError(key, fmt.Errorf("cache/broadcast: send %q: %w", key, err))
	}
	return nil
}

// Watch registers dropped, called for each key another instance
// invalidates, before and after the entry here is deleted (cache.Aside
// stops its loads in flight with it, as its own Invalidate does).
func (b *Cache) Watch(dropped func(key string)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watchers = append(b.watchers, dropped)
}

// receive drops the entry another instance invalidated. It runs on the
// hub's goroutine: an in-process Delete does not block.
func (b *Cache) receive(msg []byte) {
	origin, key, ok := strings.Cut(string(msg), " ")
	if !ok || origin == b.origin {
		return
	}
	b.mu.Lock()
	watchers := b.watchers
	b.mu.Unlock()
	for _, w := range watchers {
		w(key)
	}
	_ = b.Cache.Delete(context.Background(), key) // in process: never fails
	for _, w := range watchers {
		w(key)
	}
}

// Close stops listening and closes the wrapped cache if it holds
// resources.
func (b *Cache) Close() error {
	b.stop()
	if c, ok := b.Cache.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
