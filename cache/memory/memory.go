// Package memory implements cache.Cache in process, on otter
// (github.com/maypok86/otter/v2): size-bounded with per-entry TTL.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/maypok86/otter/v2/stats"

	"onebox/cache"
)

var _ cache.Cache = (*Cache)(nil)

// Options bound the cache. Set at most one of MaxBytes and MaxEntries;
// with neither, the cache is unbounded and entries leave only by TTL or
// Delete.
type Options struct {
	// MaxBytes bounds the summed len(key)+len(value) of the entries. It
	// counts payload only, not Go's per-entry overhead; use MaxEntries
	// when entries are tiny and their number is what matters.
	MaxBytes int64
	// MaxEntries bounds the number of entries.
	MaxEntries int
	// OnEvict, if set, is called with the key of every entry removed for
	// size or expiry (not by Delete or overwrite), for metrics. It runs
	// under the cache's lock on that key: it must be quick and must not
	// call the cache.
	OnEvict func(key string)
}

// Stats are cumulative counters since New.
type Stats struct {
	Hits   uint64
	Misses uint64 // absent or expired
	// Evictions counts entries removed for size or expiry, not by Delete
	// or overwrite.
	Evictions uint64
}

// Cache is an in-process cache.Cache. Its methods never block on I/O, so
// they ignore ctx.
type Cache struct {
	otter *otter.Cache[string, entry]
	stats *stats.Counter
}

type entry struct {
	value []byte
	ttl   time.Duration
}

// New returns an empty cache. It panics on invalid options (negative
// bounds, or both bounds set): that is a programmer error.
func New(o Options) *Cache {
	if o.MaxBytes < 0 || o.MaxEntries < 0 || (o.MaxBytes > 0 && o.MaxEntries > 0) {
		panic(fmt.Sprintf("memory: invalid options %+v: set at most one of MaxBytes and MaxEntries, not negative", o))
	}
	counter := stats.NewCounter()
	oo := &otter.Options[string, entry]{
		MaximumSize:   o.MaxEntries,
		StatsRecorder: counter,
		// Per entry: ExpiryWriting semantics (an overwrite restarts the
		// clock) with the TTL that Set stored alongside the value.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, entry]) time.Duration {
			return e.Value.ttl
		}),
	}
	if o.OnEvict != nil {
		// The atomic listener runs in place; the other one would start a
		// goroutine for every removal, overwrites included.
		oo.OnAtomicDeletion = func(e otter.DeletionEvent[string, entry]) {
			if e.Cause.IsEviction() {
				o.OnEvict(e.Key)
			}
		}
	}
	if o.MaxBytes > 0 {
		oo.MaximumWeight = uint64(o.MaxBytes)
		oo.Weigher = weigh
	}
	return &Cache{otter: otter.Must(oo), stats: counter}
}

// weigh never returns 0: otter never evicts a zero-weight entry for size.
func weigh(key string, e entry) uint32 {
	n := len(key) + len(e.value)
	return uint32(min(max(n, 1), math.MaxUint32))
}

// Get returns a copy of the value, or cache.ErrNotFound.
func (c *Cache) Get(_ context.Context, key string) ([]byte, error) {
	e, ok := c.otter.GetIfPresent(key)
	if !ok {
		return nil, cache.ErrNotFound
	}
	return bytes.Clone(e.value), nil
}

// Set stores a copy of value for ttl. It returns an error if ttl <= 0.
func (c *Cache) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("memory: set %q: ttl %v is not positive", key, ttl)
	}
	c.otter.Set(key, entry{value: bytes.Clone(value), ttl: ttl})
	return nil
}

// Delete removes key; a missing key is not an error.
func (c *Cache) Delete(_ context.Context, key string) error {
	c.otter.Invalidate(key)
	return nil
}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() Stats {
	s := c.stats.Snapshot()
	return Stats{Hits: s.Hits, Misses: s.Misses, Evictions: s.Evictions}
}

// Close stops otter's periodic expiry goroutine, which would otherwise
// stop only after the cache is garbage collected. The cache stays usable:
// expired entries are still never returned, and the maintenance that
// reads and writes trigger removes them. Close is idempotent and always
// returns nil; it is an io.Closer for the shutdown list.
func (c *Cache) Close() error {
	c.otter.StopAllGoroutines()
	return nil
}
