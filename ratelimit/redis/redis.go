// Package redis implements ratelimit.Limiter on Redis
// (github.com/redis/go-redis/v9), so that every onebox instance using the
// same Redis draws on one budget per (policy, key).
package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"onebox/internal/redisconn"
	"onebox/ratelimit"
)

var _ ratelimit.Limiter = (*Limiter)(nil)

// DefaultPrefix starts every bucket's key when Options.Prefix is empty.
const DefaultPrefix = "onebox:rl:"

// Options configure a Limiter. The zero value is usable.
type Options struct {
	// Prefix starts the Redis key of every bucket, so that several
	// applications (or test runs) can share one Redis database. Empty
	// means DefaultPrefix.
	Prefix string
}

// Limiter is a token bucket per (policy name, key), each one Redis key,
// spent by a Lua script that Redis runs atomically. It is the GCRA of
// ratelimit/memory with the same Results, on Redis's clock, so instances
// whose own clocks disagree still share one budget.
//
// A bucket's key is Prefix + policy name + ":" + the first 128 bits of
// SHA-256(key) in hex, so its size does not depend on what a client sends;
// and it expires when the bucket would be full again, since a missing
// bucket counts as full: idle buckets cost nothing. (A bucket that Redis
// evicts under maxmemory comes back full too.)
type Limiter struct {
	client goredis.UniversalClient
	prefix string
	owned  bool // made by Open: Close closes it

	closeOnce sync.Once
	closeErr  error
}

// New returns a Limiter on client, which stays the caller's: Close leaves
// it open.
func New(client goredis.UniversalClient, o Options) *Limiter {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	return &Limiter{client: client, prefix: o.Prefix}
}

// Open connects to the Redis at rawURL (redis://[user:password@]host[:port][/db]
// or rediss:// for TLS, with go-redis's query options such as
// ?read_timeout=200ms), checks that it answers, and returns a Limiter
// that owns the connection pool: Close closes it. The context of each
// Allow bounds it, deadline included. If Redis does not answer, Open
// returns the Limiter with an error wrapping redisconn.ErrUnreachable:
// Allow fails until Redis is back.
func Open(ctx context.Context, rawURL string, o Options) (*Limiter, error) {
	client, err := redisconn.Dial(ctx, rawURL)
	if client == nil {
		return nil, err
	}
	l := New(client, o)
	l.owned = true
	return l, err // err wraps redisconn.ErrUnreachable, or is nil
}

// allow is ratelimit/memory's take, run in Redis. A bucket's value is the
// time at which it is full again, on Redis's clock, as "seconds
// nanoseconds"; a missing (expired) bucket is full. Only differences of
// times, which stay below the window, are formed as one number, so
// Lua's doubles hold them exactly for windows below 2^53 ns (104 days);
// beyond, results are off by at most a microsecond.
//
// TIME is not deterministic, and calling it before a write is allowed
// because Redis replicates a script by its effects (the SET with the
// value computed here) rather than by running it again on replicas and
// in the AOF. That is the only mode since Redis 7 and the default since
// Redis 5; Redis 3.2 to 4 would need redis.replicate_commands() first.
//
// KEYS[1] is the bucket; ARGV[1] the interval (ns a token takes to
// refill) and ARGV[2] the capacity (Limit intervals, ns). It returns
// {allowed (0 or 1), remaining, retry after (ns), reset (ns)}.
var allow = goredis.NewScript(`
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now_s, now_ns = tonumber(t[1]), tonumber(t[2]) * 1000

-- debt: how long until the bucket is full, one interval per token spent.
local debt = 0
local full = redis.call('GET', KEYS[1])
if full then
  local s, ns = string.match(full, '^(%d+) (%d+)$')
  if s then -- else not written by this script: the bucket counts as full
    debt = math.max((tonumber(s) - now_s) * 1e9 + (tonumber(ns) - now_ns), 0)
  end
end

if debt + interval > capacity then
  -- Denied: nothing is spent, and the key keeps its expiry.
  return {0, 0, debt + interval - capacity, debt}
end
debt = debt + interval

-- The bucket is full again at now + debt, as (seconds, nanoseconds).
local s = math.floor(debt / 1e9)
local ns = now_ns + (debt - s * 1e9)
s = now_s + s
while ns >= 1e9 do s, ns = s + 1, ns - 1e9 end
while ns < 0 do s, ns = s - 1, ns + 1e9 end
-- It expires when it is full: a missing bucket is a full one.
redis.call('SET', KEYS[1], string.format('%d %d', s, ns),
  'PX', string.format('%d', math.ceil(debt / 1e6)))
return {1, math.floor((capacity - debt) / interval), 0, debt}
`)

// Allow takes one token from the bucket of (p.Name, key), in one round
// trip. It fails for an invalid p (wrapping ratelimit.ErrInvalidPolicy)
// and when Redis does; the caller decides whether to fail open.
func (l *Limiter) Allow(ctx context.Context, p ratelimit.Policy, key string) (ratelimit.Result, error) {
	if err := p.Validate(); err != nil {
		return ratelimit.Result{}, fmt.Errorf("redis: %w", err)
	}
	interval := p.Window / time.Duration(p.Limit)
	// As in memory: not p.Window, which may not divide evenly, so that the
	// bucket holds exactly Limit tokens.
	capacity := interval * time.Duration(p.Limit)
	v, err := allow.Run(ctx, l.client, []string{l.bucket(p.Name, key)}, int64(interval), int64(capacity)).Int64Slice()
	if err != nil {
		return ratelimit.Result{}, fmt.Errorf("redis: allow %q: %w", p.Name, err)
	}
	if len(v) != 4 {
		return ratelimit.Result{}, fmt.Errorf("redis: allow %q: script returned %d values, want 4", p.Name, len(v))
	}
	return ratelimit.Result{
		Allowed:    v[0] == 1,
		Limit:      p.Limit,
		Remaining:  int(v[1]),
		RetryAfter: time.Duration(v[2]),
		Reset:      time.Duration(v[3]),
	}, nil
}

// bucket returns the Redis key of the bucket of (policy, key). The hash
// has a fixed length, so a policy name containing ':' cannot make two
// buckets share a key.
func (l *Limiter) bucket(policy, key string) string {
	h := sha256.Sum256([]byte(key))
	return l.prefix + policy + ":" + hex.EncodeToString(h[:16])
}

// Close closes the client if Open made it, and does nothing to a client
// given to New. It is idempotent; it is an io.Closer for the shutdown
// list.
func (l *Limiter) Close() error {
	if !l.owned {
		return nil
	}
	l.closeOnce.Do(func() { l.closeErr = l.client.Close() })
	return l.closeErr
}
