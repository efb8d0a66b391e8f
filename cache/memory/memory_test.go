package memory_test

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"onebox/cache"
	"onebox/cache/cachetest"
	"onebox/cache/memory"
)

func newCache(t *testing.T, o memory.Options) *memory.Cache {
	t.Helper()
	c := memory.New(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts memory.Options
	}{
		{"MaxBytes", memory.Options{MaxBytes: 64 << 20}},
		{"MaxEntries", memory.Options{MaxEntries: 10_000}},
		{"Unbounded", memory.Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cachetest.Run(t, func(t *testing.T) cache.Cache { return newCache(t, tt.opts) })
		})
	}
}

// TestBounded writes far more than the bound allows and waits for the
// eviction, which otter runs asynchronously, to bring the cache under it.
func TestBounded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    memory.Options
		entries int
		size    int // of each value
		limit   int
		measure func(key string, value []byte) int
	}{
		{
			name: "MaxBytes", opts: memory.Options{MaxBytes: 64 << 10},
			entries: 4096, size: 1 << 10, limit: 64 << 10,
			measure: func(key string, value []byte) int { return len(key) + len(value) },
		},
		{
			name: "OversizedEntries", opts: memory.Options{MaxBytes: 1 << 10},
			entries: 16, size: 4 << 10, limit: 1 << 10,
			measure: func(key string, value []byte) int { return len(key) + len(value) },
		},
		{
			name: "MaxEntries", opts: memory.Options{MaxEntries: 100},
			entries: 10_000, size: 16, limit: 100,
			measure: func(string, []byte) int { return 1 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, tt.opts)
			ctx := t.Context()
			keys := make([]string, tt.entries)
			for i := range keys {
				keys[i] = fmt.Sprintf("k%05d", i)
				if err := c.Set(ctx, keys[i], make([]byte, tt.size), time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				total := 0
				for _, k := range keys {
					if v, err := c.Get(ctx, k); err == nil {
						total += tt.measure(k, v)
					}
				}
				if total <= tt.limit && c.Stats().Evictions > 0 {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("size %d still above the bound %d (stats %+v)", total, tt.limit, c.Stats())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	c := newCache(t, memory.Options{MaxEntries: 10})
	ctx := t.Context()
	if err := c.Set(ctx, "a", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"a", "a", "b"} {
		_, _ = c.Get(ctx, key)
	}
	if got, want := c.Stats(), (memory.Stats{Hits: 2, Misses: 1}); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}
}

// TestOnEvict: the hook sees the keys evicted for size, and agrees with
// Stats; a Delete or an overwrite is no eviction.
func TestOnEvict(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	evicted := map[string]bool{}
	c := newCache(t, memory.Options{MaxEntries: 10, OnEvict: func(key string) {
		mu.Lock()
		evicted[key] = true
		mu.Unlock()
	}})
	ctx := t.Context()
	for _, k := range []string{"kept", "kept", "deleted"} {
		if err := c.Set(ctx, k, []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.Delete(ctx, "deleted")
	for i := range 1000 {
		if err := c.Set(ctx, fmt.Sprintf("k%04d", i), []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(evicted)
		deleted := evicted["deleted"]
		mu.Unlock()
		if deleted {
			t.Fatal("a deleted key was reported as evicted")
		}
		if n > 0 && uint64(n) == c.Stats().Evictions {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d keys reported evicted, stats %+v", n, c.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSetRejectsNonPositiveTTL(t *testing.T) {
	t.Parallel()
	for _, ttl := range []time.Duration{0, -time.Second} {
		t.Run(ttl.String(), func(t *testing.T) {
			t.Parallel()
			c := newCache(t, memory.Options{})
			if err := c.Set(t.Context(), "k", []byte("v"), ttl); err == nil {
				t.Fatal("Set succeeded")
			}
			if _, err := c.Get(t.Context(), "k"); !errors.Is(err, cache.ErrNotFound) {
				t.Fatalf("Get after a rejected Set: %v, want ErrNotFound", err)
			}
		})
	}
}

func TestNewPanicsOnInvalidOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts memory.Options
	}{
		{"BothBounds", memory.Options{MaxBytes: 1, MaxEntries: 1}},
		{"NegativeBytes", memory.Options{MaxBytes: -1}},
		{"NegativeEntries", memory.Options{MaxEntries: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Fatal("New did not panic")
				}
			}()
			memory.New(tt.opts)
		})
	}
}

// TestCloseStopsGoroutines is not parallel: it counts the goroutines of
// the whole process, so it runs while the parallel tests are paused.
func TestCloseStopsGoroutines(t *testing.T) {
	const n = 20
	before := runtime.NumGoroutine()
	caches := make([]*memory.Cache, n)
	for i := range caches {
		caches[i] = memory.New(memory.Options{MaxEntries: 10})
		if err := caches[i].Set(t.Context(), "k", []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// Otter runs one expiry goroutine per cache; check that premise, or
	// the test below proves nothing.
	if got := runtime.NumGoroutine(); got < before+n {
		t.Fatalf("%d goroutines with %d caches open, want at least %d", got, n, before+n)
	}
	for _, c := range caches {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	// Otter's maintenance after writes runs on short-lived goroutines, so
	// wait for the count to settle rather than compare it once.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before New", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(caches)
}

func BenchmarkGet(b *testing.B) {
	c := memory.New(memory.Options{MaxBytes: 64 << 20})
	b.Cleanup(func() { _ = c.Close() })
	cachetest.BenchGet(b, c)
}

func BenchmarkSet(b *testing.B) {
	c := memory.New(memory.Options{MaxBytes: 64 << 20})
	b.Cleanup(func() { _ = c.Close() })
	keys := cachetest.BenchKeys(b, c)
	value := make([]byte, 128)
	i := 0
	for b.Loop() {
		if err := c.Set(b.Context(), keys[i%len(keys)], value, time.Hour); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
