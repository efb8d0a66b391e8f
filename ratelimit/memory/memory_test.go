package memory_test

import (
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"onebox/ratelimit"
	"onebox/ratelimit/memory"
	"onebox/ratelimit/ratelimittest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	ratelimittest.Run(t, func(t *testing.T) ratelimit.Limiter {
		return memory.New(memory.Options{})
	})
}

func TestAllowArithmetic(t *testing.T) {
	t.Parallel()
	// One token per 12 minutes; each step runs after the previous one on
	// the same bucket.
	p := ratelimit.Policy{Name: "api", Limit: 5, Window: time.Hour}
	steps := []struct {
		name       string
		advance    time.Duration
		allowed    bool
		remaining  int
		retryAfter time.Duration
		reset      time.Duration
	}{
		{"first", 0, true, 4, 0, 12 * time.Minute},
		{"second", 0, true, 3, 0, 24 * time.Minute},
		{"third", 0, true, 2, 0, 36 * time.Minute},
		{"fourth", 0, true, 1, 0, 48 * time.Minute},
		{"fifth", 0, true, 0, 0, time.Hour},
		{"sixth denied", 0, false, 0, 12 * time.Minute, time.Hour},
		{"just before a token", 11 * time.Minute, false, 0, time.Minute, 49 * time.Minute},
		{"one token refilled", time.Minute, true, 0, 0, time.Hour},
		{"three tokens refilled", 36 * time.Minute, true, 2, 0, 36 * time.Minute},
		{"half a token refilled", 6 * time.Minute, true, 1, 0, 42 * time.Minute},
		{"full does not bank tokens", 2 * time.Hour, true, 4, 0, 12 * time.Minute},
	}
	clock := newClock()
	l := memory.New(memory.Options{Now: clock.Now})
	for _, s := range steps {
		clock.Advance(s.advance)
		got := ratelimittest.MustAllow(t, l, p, "k")
		want := ratelimit.Result{
			Allowed:    s.allowed,
			Limit:      p.Limit,
			Remaining:  s.remaining,
			RetryAfter: s.retryAfter,
			Reset:      s.reset,
		}
		if got != want {
			t.Fatalf("%s: Allow = %+v, want %+v", s.name, got, want)
		}
	}
}

func TestAllowUnevenWindow(t *testing.T) {
	t.Parallel()
	// A second does not divide into 3 whole nanoseconds: the bucket must
	// still hold exactly 3 tokens.
	p := ratelimit.Policy{Name: "api", Limit: 3, Window: time.Second}
	const interval = 333_333_333 * time.Nanosecond
	clock := newClock()
	l := memory.New(memory.Options{Now: clock.Now})
	for want := 2; want >= 0; want-- {
		if r := ratelimittest.MustAllow(t, l, p, "k"); !r.Allowed || r.Remaining != want {
			t.Fatalf("Allow = %+v, want allowed with Remaining %d", r, want)
		}
	}
	r := ratelimittest.MustAllow(t, l, p, "k")
	if want := (ratelimit.Result{Limit: 3, RetryAfter: interval, Reset: 3 * interval}); r != want {
		t.Fatalf("Allow = %+v, want %+v", r, want)
	}
	clock.Advance(interval)
	if r := ratelimittest.MustAllow(t, l, p, "k"); !r.Allowed {
		t.Fatalf("Allow after RetryAfter = %+v, want allowed", r)
	}
}

func TestBounded(t *testing.T) {
	// Not parallel: the heap is measured, and the parallel tests wait
	// until this one is done.
	if testing.Short() {
		t.Skip("a million keys")
	}
	const maxKeys = 1000
	keys := 1_000_000
	if raceEnabled {
		keys = 100_000 // still a hundred times MaxKeys, in a tenth of the time
	}
	p := ratelimit.Policy{Name: "api", Limit: 10, Window: time.Hour}
	l := memory.New(memory.Options{MaxKeys: maxKeys})

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range keys {
		ratelimittest.MustAllow(t, l, p, strconv.Itoa(i))
		if i%10_000 == 0 {
			if n := l.Len(); n > maxKeys {
				t.Fatalf("after %d keys Len = %d, want <= %d", i+1, n, maxKeys)
			}
		}
	}
	if n := l.Len(); n > maxKeys {
		t.Fatalf("Len = %d, want <= %d", n, maxKeys)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// A bucket takes a few hundred bytes with the cache's overhead; a
	// million of them take over a hundred megabytes.
	const budget = 8 << 20
	if growth := int64(after.HeapAlloc) - int64(before.HeapAlloc); growth > budget {
		t.Errorf("heap grew by %d bytes, want <= %d", growth, budget)
	}
	runtime.KeepAlive(l)
}

func TestIdleBucketsExpire(t *testing.T) {
	t.Parallel()
	// Real time: expiry runs on the cache's clock, not Options.Now.
	p := ratelimit.Policy{Name: "api", Limit: 2, Window: 100 * time.Millisecond}
	l := memory.New(memory.Options{})
	for i := range 100 {
		ratelimittest.MustAllow(t, l, p, strconv.Itoa(i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Len = %d 10s after the buckets were full again, want 0", l.Len())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func BenchmarkAllowSameKey(b *testing.B) {
	p := ratelimit.Policy{Name: "api", Limit: 1_000_000_000, Window: time.Second}
	l := memory.New(memory.Options{})
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Allow(b.Context(), p, "k"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAllowManyKeys(b *testing.B) {
	p := ratelimit.Policy{Name: "api", Limit: 1_000_000_000, Window: time.Second}
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i)
	}
	l := memory.New(memory.Options{})
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := l.Allow(b.Context(), p, keys[i%len(keys)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// clock is a manual clock for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	return &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
