// Package cache defines the byte-oriented Cache interface that every
// cache backend implements (cache/memory in process, cache/redis shared by instances),
// and the cache-aside helper the request path uses above it.
package cache

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by Get on a miss (absent or expired).
var ErrNotFound = errors.New("cache: not found")

// Cache stores opaque bytes by string key. Implementations may evict any
// entry at any time; a cache is never the source of truth.
type Cache interface {
	// Get returns a copy of the value, or ErrNotFound. Other errors mean
	// the backend failed (a network cache can); callers treat them as a
	// miss and go to the source.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value for ttl (ttl must be > 0). The cache keeps its own
	// copy: the caller may reuse value afterwards.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// Watcher is a Cache whose entries other processes drop (an in-process
// cache kept coherent by broadcasts, cache/broadcast). Aside registers
// with it, so that a drop also stops the loads in flight in this process
// from caching what they read before the change, as Invalidate does.
type Watcher interface {
	// Watch calls dropped with each key another process invalidates,
	// before and after the entry here is deleted. dropped must not block.
	Watch(dropped func(key string))
}
