// Package redis implements cache.Cache on Redis
// (github.com/redis/go-redis/v9), a cache that several onebox instances
// share. Each entry is one Redis string under a key prefix, with the
// entry's TTL as the key's expiry; what Redis evicts under maxmemory is
// up to its policy (all entries have a TTL, so volatile-* policies apply).
package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"onebox/cache"
	"onebox/internal/redisconn"
)

var _ cache.Cache = (*Cache)(nil)

// DefaultPrefix starts every key when Options.Prefix is empty.
const DefaultPrefix = "onebox:cache:"

// Options configure a Cache. The zero value is usable.
type Options struct {
	// Prefix starts the Redis key of every entry, so that several
	// applications (or test runs) can share one Redis database. Empty
	// means DefaultPrefix.
	Prefix string
}

// Cache is a cache.Cache in Redis. It is safe for concurrent use.
type Cache struct {
	client goredis.UniversalClient
	prefix string
	owned  bool // made by Open: Close closes it

	closeOnce sync.Once
	closeErr  error
}

// New returns a Cache on client, which stays the caller's: Close leaves it
// open.
func New(client goredis.UniversalClient, o Options) *Cache {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	return &Cache{client: client, prefix: o.Prefix}
}

// Open connects to the Redis at rawURL (redis://[user:password@]host[:port][/db]
// or rediss:// for TLS, with go-redis's query options such as
// ?read_timeout=1s), checks that it answers, and returns a Cache that
// owns the connection pool: Close closes it. The context of each call
// bounds it, deadline included. If Redis does not answer, Open returns
// the Cache with an error wrapping redisconn.ErrUnreachable: its calls
// fail until Redis is back.
func Open(ctx context.Context, rawURL string, o Options) (*Cache, error) {
	client, err := redisconn.Dial(ctx, rawURL)
	if client == nil {
		return nil, err
	}
	c := New(client, o)
	c.owned = true
	return c, err // err wraps redisconn.ErrUnreachable, or is nil
}

// Get returns the value of key, a slice of its own, or cache.ErrNotFound
// when Redis holds no such key (absent, expired or evicted).
func (c *Cache) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := c.client.Get(ctx, c.prefix+key).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, cache.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("redis: get %q: %w", key, err)
	}
	return v, nil
}

// Set stores value under key for ttl. It returns an error if ttl <= 0.
// Redis keeps milliseconds: a ttl below one is stored as one, others are
// rounded down.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		// go-redis would store the key without expiry.
		return fmt.Errorf("redis: set %q: ttl %v is not positive", key, ttl)
	}
	// go-redis would round a ttl under 1ms up to 1ms too, but log a
	// complaint for each.
	if err := c.client.Set(ctx, c.prefix+key, value, max(ttl, time.Millisecond)).Err(); err != nil {
		return fmt.Errorf("redis: set %q: %w", key, err)
	}
	return nil
}

// Delete removes key; a missing key is not an error.
func (c *Cache) Delete(ctx context.Context, key string) error {
	if err := c.client.Del(ctx, c.prefix+key).Err(); err != nil {
		return fmt.Errorf("redis: delete %q: %w", key, err)
	}
	return nil
}

// Close closes the client if Open made it, and does nothing to a client
// given to New. It is idempotent; it is an io.Closer for the shutdown
// list.
func (c *Cache) Close() error {
	if !c.owned {
		return nil
	}
	c.closeOnce.Do(func() { c.closeErr = c.client.Close() })
	return c.closeErr
}
