// Package memory implements ratelimit.Limiter in process, for a single
// instance.
package memory

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/maypok86/otter/v2"

	"onebox/ratelimit"
)

var _ ratelimit.Limiter = (*Limiter)(nil)

// Options configures a Limiter. The zero value is usable.
type Options struct {
	// MaxKeys bounds the number of buckets held (default 100_000). When it
	// is reached the cache evicts the buckets least likely to be used
	// again; an evicted bucket that was not full comes back full.
	MaxKeys int
	// Now is the clock (default time.Now); tests inject their own.
	Now func() time.Time
}

// Limiter is an in-process token bucket per (policy name, key).
//
// Each bucket uses GCRA rather than golang.org/x/time/rate: its whole
// state is the time at which it is full again, from which one integer
// step yields Allowed, Remaining, RetryAfter and Reset exactly, whereas
// rate.Limiter keeps float tokens behind a second mutex and needs
// TokensAt and float arithmetic for Remaining and Reset. GCRA is also
// what a Redis script can run, and it is 8 bytes against rate's 80.
type Limiter struct {
	now     func() time.Time
	epoch   time.Time // buckets keep times as durations since epoch
	seeds   [2]maphash.Seed
	buckets *otter.Cache[bucketKey, *bucket]
}

// bucketKey holds a 128-bit hash of the caller's key rather than the key,
// so an entry's size does not depend on what a client sends. With random
// per-process seeds a collision is neither likely nor craftable.
type bucketKey struct {
	policy string // from a closed set, see ratelimit.Policy
	hash   [2]uint64
}

type bucket struct {
	window time.Duration // of the policy that created it, for expiry

	mu     sync.Mutex
	fullAt time.Duration // when the bucket is full again, since epoch
}

// New returns a Limiter with opts' zero fields set to their defaults.
func New(opts Options) *Limiter {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = 100_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Limiter{
		now:   opts.Now,
		epoch: opts.Now(),
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		buckets: otter.Must(&otter.Options[bucketKey, *bucket]{
			MaximumSize: opts.MaxKeys,
			// A bucket unused for a window is full again, and dropping it
			// changes nothing, as a missing bucket starts full. The extra
			// second covers otter moving a read's deadline only when it
			// moves by more than a second.
			ExpiryCalculator: otter.ExpiryAccessingFunc(func(e otter.Entry[bucketKey, *bucket]) time.Duration {
				return e.Value.window + time.Second
			}),
		}),
	}
}

// Allow takes one token from the bucket of (p.Name, key). It never blocks,
// so ctx is unused; it fails only for an invalid p.
func (l *Limiter) Allow(_ context.Context, p ratelimit.Policy, key string) (ratelimit.Result, error) {
	if err := p.Validate(); err != nil {
		return ratelimit.Result{}, fmt.Errorf("memory: %w", err)
	}
	k := bucketKey{
		policy: p.Name,
		hash:   [2]uint64{maphash.String(l.seeds[0], key), maphash.String(l.seeds[1], key)},
	}
	// ComputeIfAbsent creates under the key's lock, so concurrent first
	// requests share one bucket. An existing bucket costs only a read: an
	// update would allocate a cache node per call.
	b, _ := l.buckets.ComputeIfAbsent(k, func() (*bucket, bool) {
		return &bucket{window: p.Window, fullAt: l.now().Sub(l.epoch)}, false
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	res, fullAt := take(p, b.fullAt, l.now().Sub(l.epoch))
	b.fullAt = fullAt
	return res, nil
}

// take spends one token, if there is one, from the bucket of p that is
// full at fullAt, and returns the result and the new fullAt. Each token
// adds one interval of debt (fullAt - now); a call is allowed while the
// debt stays within Limit intervals.
func take(p ratelimit.Policy, fullAt, now time.Duration) (ratelimit.Result, time.Duration) {
	interval := p.Window / time.Duration(p.Limit)
	// Not p.Window, which may not divide evenly: the bucket holds
	// exactly Limit tokens and refills a fraction of a nanosecond fast.
	capacity := interval * time.Duration(p.Limit)
	debt := max(fullAt-now, 0)
	if debt+interval > capacity {
		return ratelimit.Result{
			Limit:      p.Limit,
			RetryAfter: debt + interval - capacity,
			Reset:      debt,
		}, fullAt
	}
	debt += interval
	return ratelimit.Result{
		Allowed:   true,
		Limit:     p.Limit,
		Remaining: int((capacity - debt) / interval),
		Reset:     debt,
	}, now + debt
}

// Len returns the number of buckets held, after pending evictions and
// expirations, for tests and metrics.
func (l *Limiter) Len() int {
	l.buckets.CleanUp()
	return l.buckets.EstimatedSize()
}
