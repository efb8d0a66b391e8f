package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onebox/cache"
	"onebox/cache/memory"
)

var (
	errSource  = errors.New("source failed")
	errBackend = errors.New("backend failed")
)

func newMemory(t testing.TB) *memory.Cache {
	t.Helper()
	c := memory.New(memory.Options{MaxEntries: 10_000})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// counted returns a load function that counts its calls and returns
// value and err.
func counted(calls *atomic.Int32, value string, err error) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		calls.Add(1)
		if err != nil {
			return nil, err
		}
		return []byte(value), nil
	}
}

// blocking returns a load function that signals started and then waits
// for release (or its ctx) before returning value.
func blocking(value string) (load func(context.Context) ([]byte, error), started <-chan struct{}, release chan<- struct{}) {
	s, r := make(chan struct{}), make(chan struct{})
	return func(ctx context.Context) ([]byte, error) {
		close(s)
		select {
		case <-r:
			return []byte(value), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, s, r
}

func mustGet(t *testing.T, a *cache.Aside, key string, load func(context.Context) ([]byte, error)) string {
	t.Helper()
	v, err := a.Get(t.Context(), key, load)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return string(v)
}

// noLoad fails the test if a Get that should be served from the cache
// calls it.
func noLoad(t *testing.T) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		t.Error("load called, want a cache hit")
		return nil, errSource
	}
}

func TestAsideLoadsOncePerKey(t *testing.T) {
	t.Parallel()
	const callers = 500
	var calls, onLoad atomic.Int32
	a := cache.NewAside(newMemory(t), cache.AsideOptions{
		TTL: time.Minute,
		OnLoad: func(_ time.Duration, err error) {
			onLoad.Add(1)
			if err != nil {
				t.Errorf("OnLoad: %v", err)
			}
		},
	})
	load := func(context.Context) ([]byte, error) {
		calls.Add(1)
		time.Sleep(20 * time.Millisecond) // let the other callers pile up
		return []byte("value"), nil
	}

	start := make(chan struct{})
	got := make([][]byte, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			<-start
			v, err := a.Get(t.Context(), "k", load)
			if err != nil {
				t.Errorf("Get: %v", err)
			}
			got[i] = v
		})
	}
	close(start)
	wg.Wait()

	if n := calls.Load(); n != 1 {
		t.Fatalf("load called %d times, want 1", n)
	}
	if n := onLoad.Load(); n != 1 {
		t.Fatalf("OnLoad called %d times, want 1", n)
	}
	for i, v := range got {
		if string(v) != "value" {
			t.Fatalf("caller %d got %q", i, v)
		}
	}
	// Callers own their copies.
	got[0][0] = 'X'
	for i, v := range got[1:] {
		if string(v) != "value" {
			t.Fatalf("caller %d sees another caller's write: %q", i+1, v)
		}
	}
}

func TestAsideLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		negativeTTL time.Duration
		loadErr     error
		wantErr     error
		wantCalls   int32 // after two Gets
	}{
		{"AbsentIsCached", time.Hour, fmt.Errorf("user 7: %w", cache.ErrAbsent), cache.ErrAbsent, 1},
		{"AbsentWithoutNegativeTTL", 0, fmt.Errorf("user 7: %w", cache.ErrAbsent), cache.ErrAbsent, 2},
		{"OtherErrorIsNotCached", time.Hour, errSource, errSource, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			a := cache.NewAside(newMemory(t), cache.AsideOptions{TTL: time.Hour, NegativeTTL: tt.negativeTTL})
			for range 2 {
				if _, err := a.Get(t.Context(), "k", counted(&calls, "", tt.loadErr)); !errors.Is(err, tt.wantErr) {
					t.Fatalf("Get: %v, want %v", err, tt.wantErr)
				}
			}
			if n := calls.Load(); n != tt.wantCalls {
				t.Fatalf("load called %d times, want %d", n, tt.wantCalls)
			}
		})
	}
}

func TestAsideAbsenceExpires(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	a := cache.NewAside(newMemory(t), cache.AsideOptions{TTL: time.Hour, NegativeTTL: 50 * time.Millisecond})
	load := counted(&calls, "", cache.ErrAbsent)
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 2 {
		if _, err := a.Get(t.Context(), "k", load); !errors.Is(err, cache.ErrAbsent) {
			t.Fatalf("Get: %v, want ErrAbsent", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("absence still cached 5s after its 50ms NegativeTTL")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recordingCache records the TTL of every Set.
type recordingCache struct {
	cache.Cache
	mu   sync.Mutex
	ttls []time.Duration
}

func (c *recordingCache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	c.mu.Lock()
	c.ttls = append(c.ttls, ttl)
	c.mu.Unlock()
	return c.Cache.Set(ctx, key, value, ttl)
}

func TestAsideJitter(t *testing.T) {
	t.Parallel()
	const ttl, negativeTTL = 100 * time.Second, 10 * time.Second
	tests := []struct {
		name             string
		rand             float64
		wantMin, wantMax time.Duration // of the value's TTL; the absence's is a tenth
	}{
		{"Lowest", 0, 90 * time.Second, 90 * time.Second},
		{"Middle", 0.5, ttl, ttl},
		{"Highest", math.Nextafter(1, 0), 110*time.Second - time.Microsecond, 110 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc := &recordingCache{Cache: newMemory(t)}
			a := cache.NewAside(rc, cache.AsideOptions{
				TTL: ttl, NegativeTTL: negativeTTL, Jitter: 0.1,
				Rand: func() float64 { return tt.rand },
			})
			mustGet(t, a, "value", counted(new(atomic.Int32), "v", nil))
			_, _ = a.Get(t.Context(), "absent", counted(new(atomic.Int32), "", cache.ErrAbsent))
			if got := rc.ttls[0]; got < tt.wantMin || got > tt.wantMax {
				t.Errorf("value TTL %v, want in [%v, %v]", got, tt.wantMin, tt.wantMax)
			}
			if got := rc.ttls[1]; got < tt.wantMin/10 || got > tt.wantMax/10 {
				t.Errorf("absence TTL %v, want in [%v, %v]", got, tt.wantMin/10, tt.wantMax/10)
			}
		})
	}

	t.Run("DefaultRand", func(t *testing.T) {
		t.Parallel()
		rc := &recordingCache{Cache: newMemory(t)}
		a := cache.NewAside(rc, cache.AsideOptions{TTL: ttl, Jitter: 0.1})
		for i := range 200 {
			mustGet(t, a, strconv.Itoa(i), counted(new(atomic.Int32), "v", nil))
		}
		for _, got := range rc.ttls {
			if got < 90*time.Second || got > 110*time.Second {
				t.Fatalf("TTL %v outside 100s±10%%", got)
			}
		}
		if slices.Min(rc.ttls) == slices.Max(rc.ttls) {
			t.Fatalf("all %d TTLs are %v: no jitter", len(rc.ttls), rc.ttls[0])
		}
	})
}

// TestAsideInvalidateDuringLoad is the classic cache-aside race: a load
// reads the old row, a writer changes it and invalidates, and the load
// must then not cache the old row.
func TestAsideInvalidateDuringLoad(t *testing.T) {
	t.Parallel()
	a := cache.NewAside(newMemory(t), cache.AsideOptions{TTL: time.Hour})
	oldLoad, started, release := blocking("old")
	done := make(chan string)
	go func() {
		v, err := a.Get(t.Context(), "k", oldLoad)
		if err != nil {
			t.Errorf("first Get: %v", err)
		}
		done <- string(v)
	}()
	<-started
	if err := a.Invalidate(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	close(release)
	// The first Get started before the change, so the old value is right
	// for it; it must just not stay.
	if v := <-done; v != "old" {
		t.Fatalf("first Get = %q, want old", v)
	}

	var calls atomic.Int32
	if v := mustGet(t, a, "k", counted(&calls, "new", nil)); v != "new" || calls.Load() != 1 {
		t.Fatalf("Get after the load = %q with %d loads, want new with 1", v, calls.Load())
	}
}

// TestAsideGetAfterInvalidateLoadsAgain checks that a Get after an
// Invalidate does not join the load that started before it.
func TestAsideGetAfterInvalidateLoadsAgain(t *testing.T) {
	t.Parallel()
	a := cache.NewAside(newMemory(t), cache.AsideOptions{TTL: time.Hour})
	oldLoad, started, release := blocking("old")
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = a.Get(t.Context(), "k", oldLoad)
	}()
	<-started
	if err := a.Invalidate(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}

	if v := mustGet(t, a, "k", counted(new(atomic.Int32), "new", nil)); v != "new" {
		t.Fatalf("Get after Invalidate = %q, want new", v)
	}
	close(release)
	<-done
	if v := mustGet(t, a, "k", noLoad(t)); v != "new" {
		t.Fatalf("Get after the old load ended = %q, want new", v)
	}
}

// TestAsideInvalidateStress has a writer bump a version and invalidate
// while readers keep loading: after each Invalidate, the writer must read
// at least the version it wrote. Under -race it also checks the locking.
func TestAsideInvalidateStress(t *testing.T) {
	t.Parallel()
	var version atomic.Int64
	load := func(context.Context) ([]byte, error) {
		v := version.Load()
		runtime.Gosched() // widen the window between the read and the write
		return strconv.AppendInt(nil, v, 10), nil
	}
	a := cache.NewAside(newMemory(t), cache.AsideOptions{TTL: time.Hour})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := a.Get(t.Context(), "k", load); err != nil {
					t.Errorf("reader Get: %v", err)
					return
				}
				runtime.Gosched() // spinning readers would starve the writer
			}
		})
	}
	for i := int64(1); i <= 500; i++ {
		version.Store(i)
		if err := a.Invalidate(t.Context(), "k"); err != nil {
			t.Fatal(err)
		}
		v := mustGet(t, a, "k", load)
		if n, _ := strconv.ParseInt(v, 10, 64); n < i {
			t.Errorf("after writing version %d and invalidating, read %d", i, n)
			break
		}
	}
	close(stop)
	wg.Wait()
}

// A caller that gives up fails nobody else: the load does not see the
// cancellation of the Get that runs it, and a waiter whose ctx ends
// returns at once while the others get the value.
func TestAsideCallerCancelDoesNotFailOthers(t *testing.T) {
	t.Parallel()
	a := cache.NewAside(newMemory(t), cache.AsideOptions{TTL: time.Hour})
	load, started, release := blocking("v")

	loaderCtx, cancelLoader := context.WithCancel(t.Context())
	type result struct {
		v   []byte
		err error
	}
	loader := make(chan result)
	go func() {
		v, err := a.Get(loaderCtx, "k", load)
		loader <- result{v, err}
	}()
	<-started

	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			v, err := a.Get(t.Context(), "k", noLoad(t))
			if err != nil || string(v) != "v" {
				t.Errorf("waiter Get = %q, %v; want v", v, err)
			}
		})
	}
	waiterCtx, cancelWaiter := context.WithCancel(t.Context())
	waiter := make(chan error)
	go func() {
		_, err := a.Get(waiterCtx, "k", noLoad(t))
		waiter <- err
	}()
	cancelLoader()
	cancelWaiter()
	if err := <-waiter; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v, want context.Canceled", err)
	}
	close(release)
	if r := <-loader; r.err != nil || string(r.v) != "v" {
		t.Fatalf("cancelled loader's Get = %q, %v; want v: its load must not see the cancellation", r.v, r.err)
	}
	wg.Wait()
}

func TestAsideLoadTimeout(t *testing.T) {
	t.Parallel()
	a := cache.NewAside(newMemory(t), cache.AsideOptions{TTL: time.Hour, LoadTimeout: 20 * time.Millisecond})
	load, _, _ := blocking("never")
	if _, err := a.Get(t.Context(), "k", load); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get: %v, want context.DeadlineExceeded", err)
	}
}

func TestAsideLoadPanicIsError(t *testing.T) {
	t.Parallel()
	a := cache.NewAside(newMemory(t), cache.AsideOptions{TTL: time.Hour})
	_, err := a.Get(t.Context(), "k", func(context.Context) ([]byte, error) { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Get: %v, want the panic as an error", err)
	}
	if v := mustGet(t, a, "k", counted(new(atomic.Int32), "v", nil)); v != "v" {
		t.Fatalf("Get after the panic = %q, want v", v)
	}
}

// failingCache fails every operation, as an unreachable network cache does.
type failingCache struct{}

func (failingCache) Get(context.Context, string) ([]byte, error) { return nil, errBackend }
func (failingCache) Set(context.Context, string, []byte, time.Duration) error {
	return errBackend
}
func (failingCache) Delete(context.Context, string) error { return errBackend }

func TestAsideCacheFailuresFallThrough(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cache     func(t *testing.T) cache.Cache
		wantCalls int32 // after two Gets
		wantOps   []string
	}{
		{"Failing", func(*testing.T) cache.Cache { return failingCache{} }, 2, []string{"get", "get", "set", "get", "get", "set"}},
		{"Undecodable", func(t *testing.T) cache.Cache {
			c := newMemory(t)
			if err := c.Set(t.Context(), "k", []byte("not an Aside entry"), time.Hour); err != nil {
				t.Fatal(err)
			}
			return c
		}, 1, []string{"get", "get"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu  sync.Mutex
				ops []string
			)
			a := cache.NewAside(tt.cache(t), cache.AsideOptions{
				TTL: time.Hour,
				OnError: func(op string, err error) {
					mu.Lock()
					defer mu.Unlock()
					ops = append(ops, op)
				},
			})
			var calls atomic.Int32
			for range 2 {
				if v := mustGet(t, a, "k", counted(&calls, "v", nil)); v != "v" {
					t.Fatalf("Get = %q, want v", v)
				}
			}
			if n := calls.Load(); n != tt.wantCalls {
				t.Errorf("load called %d times, want %d", n, tt.wantCalls)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(ops, tt.wantOps) {
				t.Errorf("OnError ops %q, want %q", ops, tt.wantOps)
			}
		})
	}
}

func TestAsideWithoutCache(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var hooked atomic.Int32
	a := cache.NewAside(nil, cache.AsideOptions{
		TTL: time.Hour, NegativeTTL: time.Hour,
		OnLookup: func(bool) { hooked.Add(1) },
		OnLoad:   func(time.Duration, error) { hooked.Add(1) },
	})
	for range 2 {
		if v := mustGet(t, a, "k", counted(&calls, "v", nil)); v != "v" {
			t.Fatalf("Get = %q, want v", v)
		}
		if _, err := a.Get(t.Context(), "absent", counted(&calls, "", cache.ErrAbsent)); !errors.Is(err, cache.ErrAbsent) {
			t.Fatalf("Get of an absent key: %v, want ErrAbsent", err)
		}
	}
	if n := calls.Load(); n != 4 {
		t.Fatalf("load called %d times, want 4: nothing is cached", n)
	}
	if n := hooked.Load(); n != 0 {
		t.Errorf("hooks called %d times without a cache, want 0", n)
	}
	if err := a.Invalidate(t.Context(), "k"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
}

func TestAsideInvalidateReturnsCacheError(t *testing.T) {
	t.Parallel()
	a := cache.NewAside(failingCache{}, cache.AsideOptions{TTL: time.Hour})
	if err := a.Invalidate(t.Context(), "k"); !errors.Is(err, errBackend) {
		t.Fatalf("Invalidate: %v, want %v", err, errBackend)
	}
}

func TestNewAsidePanicsOnInvalidOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts cache.AsideOptions
	}{
		{"NoTTL", cache.AsideOptions{}},
		{"NegativeJitter", cache.AsideOptions{TTL: time.Second, Jitter: -0.1}},
		{"WholeJitter", cache.AsideOptions{TTL: time.Second, Jitter: 1}},
		{"NegativeNegativeTTL", cache.AsideOptions{TTL: time.Second, NegativeTTL: -1}},
		{"NegativeLoadTimeout", cache.AsideOptions{TTL: time.Second, LoadTimeout: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Fatal("NewAside did not panic")
				}
			}()
			cache.NewAside(failingCache{}, tt.opts)
		})
	}
}

func BenchmarkAsideHit(b *testing.B) {
	a := cache.NewAside(newMemory(b), cache.AsideOptions{TTL: time.Hour, Jitter: 0.1})
	value := bytes.Repeat([]byte("x"), 128)
	load := func(context.Context) ([]byte, error) { return value, nil }
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "key:" + strconv.Itoa(i)
		if _, err := a.Get(b.Context(), keys[i], load); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := a.Get(b.Context(), keys[i%len(keys)], load); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// TestAsideHooks: OnLookup sees one hit or miss per Get (a cached absence
// is a hit), and StartLoad wraps each load: the load runs under the
// context it returns, and end gets the load's error.
func TestAsideHooks(t *testing.T) {
	t.Parallel()
	type ctxKey struct{}
	var hits, misses, started atomic.Int32
	var ended []error
	var mu sync.Mutex
	a := cache.NewAside(newMemory(t), cache.AsideOptions{
		TTL: time.Minute, NegativeTTL: time.Minute,
		OnLookup: func(hit bool) {
			if hit {
				hits.Add(1)
			} else {
				misses.Add(1)
			}
		},
		StartLoad: func(ctx context.Context) (context.Context, func(error)) {
			started.Add(1)
			return context.WithValue(ctx, ctxKey{}, "traced"), func(err error) {
				mu.Lock()
				ended = append(ended, err)
				mu.Unlock()
			}
		},
	})
	load := func(ctx context.Context) ([]byte, error) {
		if ctx.Value(ctxKey{}) != "traced" {
			t.Error("the load does not run under StartLoad's context")
		}
		return []byte("v"), nil
	}
	mustGet(t, a, "k", load)
	mustGet(t, a, "k", noLoad(t))
	absent := func(context.Context) ([]byte, error) { return nil, cache.ErrAbsent }
	for range 2 {
		if _, err := a.Get(t.Context(), "gone", absent); !errors.Is(err, cache.ErrAbsent) {
			t.Fatalf("Get absent: %v", err)
		}
	}
	if hits.Load() != 2 || misses.Load() != 2 || started.Load() != 2 {
		t.Fatalf("hits %d, misses %d, loads started %d; want 2, 2, 2", hits.Load(), misses.Load(), started.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ended) != 2 || ended[0] != nil || !errors.Is(ended[1], cache.ErrAbsent) {
		t.Fatalf("end called with %v", ended)
	}
}

// A hook that panics during a load must not leave the key's flight open:
// the panic goes up the loader's stack, and the next Get loads afresh
// instead of waiting on a flight that never lands.
func TestAsideHookPanicDoesNotWedgeKey(t *testing.T) {
	t.Parallel()
	var boom atomic.Bool
	boom.Store(true)
	a := cache.NewAside(newMemory(t), cache.AsideOptions{TTL: time.Hour, OnLoad: func(time.Duration, error) {
		if boom.Swap(false) {
			panic("hook")
		}
	}})
	load := func(context.Context) ([]byte, error) { return []byte("v"), nil }
	func() {
		defer func() {
			if r := recover(); r != "hook" {
				t.Errorf("first Get recovered %v, want the hook's panic", r)
			}
		}()
		_, _ = a.Get(t.Context(), "k", load)
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if v, err := a.Get(ctx, "k", load); err != nil || string(v) != "v" {
		t.Fatalf("Get after the panic = %q, %v; want v", v, err)
	}
}

// watchedCache is a cache.Watcher whose drops the test makes.
type watchedCache struct {
	cache.Cache
	dropped func(key string)
}

func (w *watchedCache) Watch(dropped func(key string)) { w.dropped = dropped }

// TestAsideWatchesRemoteDrops: a drop from another instance while a load
// is in flight stops that load from caching what it read before it.
func TestAsideWatchesRemoteDrops(t *testing.T) {
	t.Parallel()
	mem := memory.New(memory.Options{MaxBytes: 1 << 20})
	defer mem.Close()
	w := &watchedCache{Cache: mem}
	a := cache.NewAside(w, cache.AsideOptions{TTL: time.Hour})
	if w.dropped == nil {
		t.Fatal("Aside did not watch a cache.Watcher")
	}
	loading, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := a.Get(t.Context(), "u:1", func(context.Context) ([]byte, error) {
			close(loading)
			<-release
			return []byte("read before the change"), nil
		})
		done <- err
	}()
	<-loading
	w.dropped("u:1") // another instance changed u:1 and invalidated it
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v, err := mem.Get(t.Context(), "u:1"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("cached %q after a remote drop during its load, want nothing", v)
	}
}
