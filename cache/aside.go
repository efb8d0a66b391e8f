package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"

	"onebox/internal/lazyctx"
)

// ErrAbsent is how a load function says that the key does not exist at
// the source: it returns an error wrapping ErrAbsent, and Aside caches
// that fact for NegativeTTL. Check Aside.Get's error with
// errors.Is(err, ErrAbsent): the load that found the key absent returns
// its own error, but a Get served from the cached absence returns
// ErrAbsent itself, so the other errors the load wrapped are not there.
var ErrAbsent = errors.New("cache: absent at source")

// DefaultLoadTimeout bounds a load when AsideOptions.LoadTimeout is 0.
const DefaultLoadTimeout = 10 * time.Second

// AsideOptions configure an Aside. The hooks may be called concurrently
// and must not block.
type AsideOptions struct {
	// TTL is how long a loaded value stays cached (required, > 0).
	TTL time.Duration
	// Jitter spreads each TTL uniformly over TTL×(1±Jitter), so that
	// entries loaded together do not expire together. In [0, 1).
	Jitter float64
	// NegativeTTL is how long an absence (ErrAbsent) stays cached; keep it
	// short. 0 disables negative caching.
	NegativeTTL time.Duration
	// LoadTimeout bounds each load, which runs detached from the
	// cancellation of the Get that started it. 0 means DefaultLoadTimeout.
	LoadTimeout time.Duration
	// OnLoad, if set, is called after every load with its duration and
	// error, for metrics.
	OnLoad func(d time.Duration, err error)
	// OnLookup, if set, is called once per Get with whether the cache
	// answered it (a cached absence is a hit), for metrics.
	OnLookup func(hit bool)
	// StartLoad, if set, is called before every load with the context the
	// load would run under; the load runs under the context it returns,
	// and end is called with the load's error when it returns. For
	// tracing: a span around the load.
	StartLoad func(ctx context.Context) (_ context.Context, end func(error))
	// OnError, if set, is called when the cache fails ("get" or "set",
	// including an entry this package cannot decode). Aside ignores such
	// failures otherwise: the source is the truth.
	OnError func(op string, err error)
	// Rand returns a number in [0, 1) to pick the jitter; nil means
	// math/rand/v2.Float64. Tests set it.
	Rand func() float64
}

// Aside implements cache-aside over a Cache: Get serves from the cache,
// else loads from the source, once per key at a time in this process, and
// caches the result.
//
// Aside stores its own encoding under each key, so keys it manages must
// be written only through it (Invalidate may be called from anywhere).
//
// Invalidation is exact in this process: once Invalidate returns, no Get
// returns a value read before it was called, because loads that started
// earlier neither cache their results nor take in later Gets. Across
// processes sharing a cache it is not: a load in another process that read
// the source before the change may write its result after the Invalidate,
// and that stale value is served until its TTL ends. There the TTL bounds
// staleness.
type Aside struct {
	cache Cache
	off   bool // no cache: nothing is stored, and the hooks are not called
	opts  AsideOptions

	mu sync.Mutex
	// flights holds, by key, the load that later Gets of the key join.
	// Invalidate removes it, so Gets after it start a fresh load while
	// the old one runs on, unable to cache what it read.
	flights map[string]*flight
}

// flight is one load of a key, shared by the Gets that join it.
// golang.org/x/sync/singleflight would do, but its waiters cannot leave
// on their own context without a goroutine per load (DoChan), and a
// fresh goroutine grows its stack anew for every database call.
type flight struct {
	done    chan struct{} // closed once val and err are set
	val     []byte
	err     error
	waiters int // Gets that joined; guarded by Aside.mu

	mu    sync.Mutex // held from the stale check to the end of the write
	stale bool       // set by Invalidate: the result must not be cached
}

// NewAside returns an Aside over c. A nil c turns caching off: every Get
// loads, though concurrent Gets of a key still share one load, and the
// hooks are not called, since there is no cache to observe (the source
// reports its own reads). NewAside panics on invalid options: that is a
// programmer error.
func NewAside(c Cache, o AsideOptions) *Aside {
	if o.TTL <= 0 || o.Jitter < 0 || o.Jitter >= 1 || o.NegativeTTL < 0 || o.LoadTimeout < 0 {
		panic(fmt.Sprintf("cache: invalid AsideOptions: TTL %v, Jitter %v, NegativeTTL %v, LoadTimeout %v",
			o.TTL, o.Jitter, o.NegativeTTL, o.LoadTimeout))
	}
	if o.LoadTimeout == 0 {
		o.LoadTimeout = DefaultLoadTimeout
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	off := c == nil
	if off {
		c = noCache{}
		o.OnLookup, o.OnLoad, o.StartLoad, o.OnError = nil, nil, nil, nil
	}
	a := &Aside{cache: c, off: off, opts: o, flights: make(map[string]*flight)}
	if w, ok := c.(Watcher); ok {
		w.Watch(a.detach)
	}
	return a
}

// Get returns the value for key from the cache, or else from load, which
// it then caches for TTL±Jitter. Concurrent Gets of a key that is not
// cached share one call of load, made by the first of them on its own
// goroutine. So for a given key, every load function must compute the
// same value.
//
// load runs with the first caller's context values but not its
// cancellation, bounded by LoadTimeout instead, so that one caller giving
// up fails nobody else. That first caller waits for load (which should
// honour its context, so LoadTimeout bounds it); the others return their
// ctx's error as soon as their ctx ends. If load's error wraps ErrAbsent, the absence is cached for
// NegativeTTL and Gets until then return ErrAbsent without calling load;
// other errors are returned and not cached. A panic in load becomes an
// error. Each caller gets its own copy of the value.
func (a *Aside) Get(ctx context.Context, key string, load func(context.Context) ([]byte, error)) ([]byte, error) {
	v, ok, err := a.cached(ctx, key)
	if a.opts.OnLookup != nil {
		a.opts.OnLookup(ok)
	}
	if ok {
		return v, err
	}
	a.mu.Lock()
	if f := a.flights[key]; f != nil {
		f.waiters++
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cache: get %q: %w", key, ctx.Err())
		case <-f.done:
			if f.err != nil {
				return nil, f.err
			}
			return bytes.Clone(f.val), nil
		}
	}
	f := &flight{done: make(chan struct{})}
	a.flights[key] = f
	a.mu.Unlock()
	return a.lead(ctx, key, f, load)
}

// lead runs flight f on the caller's goroutine and then hands its result
// to the Gets that joined it. If a hook or the cache panics (a panic in
// load is already an error), they get an error and the panic goes on up
// the caller's stack: the flight must not stay open, or every later miss
// of key would join it and wait for nothing.
func (a *Aside) lead(ctx context.Context, key string, f *flight, load func(context.Context) ([]byte, error)) (v []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			a.land(key, f, nil, fmt.Errorf("cache: get %q: panic: %v", key, r))
			panic(r)
		}
		a.land(key, f, v, err)
	}()
	return a.fly(ctx, key, f, load)
}

// land ends flight f with v and err: it leaves the map, and the Gets that
// joined it are woken with their copy.
func (a *Aside) land(key string, f *flight, v []byte, err error) {
	a.mu.Lock()
	if a.flights[key] == f { // else Invalidate removed it
		delete(a.flights, key)
	}
	waiters := f.waiters // final: nobody can join any more
	a.mu.Unlock()
	f.val, f.err = v, err
	if waiters > 0 {
		f.val = bytes.Clone(v) // the waiters copy it while the loader's caller may change v
	}
	close(f.done)
}

// Invalidate deletes key from the cache, and makes sure that no load of
// key already in flight in this process caches its result or is joined
// by a later Get. Call it after changing the source.
func (a *Aside) Invalidate(ctx context.Context, key string) error {
	a.detach(key)
	err := a.cache.Delete(ctx, key)
	// Again: a flight that started before the Delete may have read the
	// old entry from the cache (written by one detached above), and Gets
	// from now on must not join it.
	a.detach(key)
	if err != nil {
		return fmt.Errorf("cache: invalidate %q: %w", key, err)
	}
	return nil
}

// detach removes key's flight, if any, from the map, so that no later
// Get joins it, and marks it stale, so that it caches nothing; if it is
// writing to the cache, detach waits for the write to end.
func (a *Aside) detach(key string) {
	a.mu.Lock()
	f := a.flights[key]
	delete(a.flights, key)
	a.mu.Unlock()
	if f != nil {
		f.mu.Lock()
		f.stale = true
		f.mu.Unlock()
	}
}

// fly runs flight f, one load of key: it checks the cache again (a Get
// may have missed just before the previous flight wrote), calls fn and
// caches the result unless f went stale meanwhile.
func (a *Aside) fly(ctx context.Context, key string, f *flight, fn func(context.Context) ([]byte, error)) ([]byte, error) {
	// Lazy: a load that never waits on its context (a read by key) makes
	// no timer.
	ctx, cancel := lazyctx.WithTimeout(context.WithoutCancel(ctx), a.opts.LoadTimeout)
	defer cancel()

	if v, ok, err := a.cached(ctx, key); ok {
		return v, err
	}
	var end func(error)
	if a.opts.StartLoad != nil {
		ctx, end = a.opts.StartLoad(ctx)
	}
	start := time.Now()
	v, err := callLoad(ctx, fn)
	if a.opts.OnLoad != nil {
		a.opts.OnLoad(time.Since(start), err)
	}
	if end != nil {
		end(err)
	}
	switch {
	case a.off:
	case err == nil:
		a.set(ctx, key, f, append([]byte{tagValue}, v...), a.opts.TTL)
	case errors.Is(err, ErrAbsent) && a.opts.NegativeTTL > 0:
		a.set(ctx, key, f, []byte{tagAbsent}, a.opts.NegativeTTL)
	}
	return v, err
}

// callLoad turns a panic into an error, so that the Gets waiting on the
// flight are answered too rather than left waiting for a close that never
// comes.
func callLoad(ctx context.Context, fn func(context.Context) ([]byte, error)) (v []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cache: load panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return fn(ctx)
}

// set caches an entry unless Invalidate marked f stale. Holding f.mu
// across the write means an Invalidate either comes first and stops it,
// or waits for it and deletes what it wrote.
func (a *Aside) set(ctx context.Context, key string, f *flight, entry []byte, ttl time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stale {
		return
	}
	if err := a.cache.Set(ctx, key, entry, jitter(ttl, a.opts.Jitter, a.opts.Rand())); err != nil {
		a.report("set", fmt.Errorf("cache: set %q: %w", key, err))
	}
}

// Stored entries start with one of these tags.
const (
	tagValue  byte = 'v' // the value follows
	tagAbsent byte = 'a' // the source has no such key
)

// cached returns what the cache holds for key: ok is false on a miss,
// including a failed or undecodable read, and err is ErrAbsent for a
// cached absence.
func (a *Aside) cached(ctx context.Context, key string) (v []byte, ok bool, err error) {
	entry, err := a.cache.Get(ctx, key)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			a.report("get", fmt.Errorf("cache: get %q: %w", key, err))
		}
		return nil, false, nil
	}
	switch {
	case len(entry) > 0 && entry[0] == tagValue:
		return entry[1:], true, nil
	case len(entry) == 1 && entry[0] == tagAbsent:
		return nil, true, ErrAbsent
	}
	a.report("get", fmt.Errorf("cache: get %q: undecodable entry of %d bytes", key, len(entry)))
	return nil, false, nil
}

func (a *Aside) report(op string, err error) {
	if a.opts.OnError != nil {
		a.opts.OnError(op, err)
	}
}

// jitter spreads ttl over ttl×(1±j) given r in [0, 1), never below 1ns.
func jitter(ttl time.Duration, j, r float64) time.Duration {
	d := ttl + time.Duration(float64(ttl)*j*(2*r-1))
	return max(d, 1)
}

// noCache holds nothing; it stands in for a nil Cache.
type noCache struct{}

func (noCache) Get(context.Context, string) ([]byte, error)              { return nil, ErrNotFound }
func (noCache) Set(context.Context, string, []byte, time.Duration) error { return nil }
func (noCache) Delete(context.Context, string) error                     { return nil }
