package redis_test

import (
	"crypto/rand"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"onebox/internal/redisconn"
	"onebox/internal/redisconn/redistest"
	"onebox/ratelimit"
	"onebox/ratelimit/ratelimittest"
	redislimit "onebox/ratelimit/redis"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t, "rate limiter")
	ratelimittest.Run(t, func(t *testing.T) ratelimit.Limiter {
		return redislimit.New(client, redislimit.Options{Prefix: redistest.Prefix(t, client)})
	})
}

// A fresh bucket's results are exact to the nanosecond, as in memory: the
// first call's Reset is one interval, even one that is not a whole number
// of microseconds, and the Lua arithmetic keeps exactly Limit tokens.
func TestExactArithmetic(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t, "rate limiter")
	l := redislimit.New(client, redislimit.Options{Prefix: redistest.Prefix(t, client)})
	tests := []struct {
		p        ratelimit.Policy
		interval time.Duration
	}{
		{ratelimit.Policy{Name: "api", Limit: 5, Window: time.Hour}, 12 * time.Minute},
		{ratelimit.Policy{Name: "api", Limit: 3, Window: time.Hour}, 20 * time.Minute},
		// A second does not divide into 3 whole nanoseconds.
		{ratelimit.Policy{Name: "uneven", Limit: 3, Window: 10 * time.Second}, 3_333_333_333 * time.Nanosecond},
	}
	for _, tt := range tests {
		key := rand.Text()
		first := ratelimittest.MustAllow(t, l, tt.p, key)
		if want := (ratelimit.Result{Allowed: true, Limit: tt.p.Limit, Remaining: tt.p.Limit - 1, Reset: tt.interval}); first != want {
			t.Fatalf("%+v: first Allow = %+v, want %+v", tt.p, first, want)
		}
		for want := tt.p.Limit - 2; want >= 0; want-- {
			if r := ratelimittest.MustAllow(t, l, tt.p, key); !r.Allowed || r.Remaining != want {
				t.Fatalf("%+v: Allow = %+v, want allowed with Remaining %d", tt.p, r, want)
			}
		}
		r := ratelimittest.MustAllow(t, l, tt.p, key)
		capacity := tt.interval * time.Duration(tt.p.Limit)
		// Time has passed since the first call, a little.
		if r.Allowed || r.Remaining != 0 || r.Reset > capacity || r.Reset < capacity-time.Second ||
			r.RetryAfter != r.Reset+tt.interval-capacity {
			t.Fatalf("%+v: Allow after the burst = %+v, want denied, Reset just under %v and RetryAfter = Reset - %v",
				tt.p, r, capacity, capacity-tt.interval)
		}
	}
}

// Two Limiters on two clients, as two instances of onebox would be, draw
// on one budget.
func TestSharedBudget(t *testing.T) {
	t.Parallel()
	a, b := redistest.Client(t, "rate limiter"), redistest.Client(t, "rate limiter")
	prefix := redistest.Prefix(t, a)
	limiters := []ratelimit.Limiter{
		redislimit.New(a, redislimit.Options{Prefix: prefix}),
		redislimit.New(b, redislimit.Options{Prefix: prefix}),
	}
	p := ratelimit.Policy{Name: "api", Limit: 10, Window: time.Hour}

	// In turns: Remaining counts down across both.
	key := rand.Text()
	for i := range p.Limit {
		want := p.Limit - 1 - i
		if r := ratelimittest.MustAllow(t, limiters[i%2], p, key); !r.Allowed || r.Remaining != want {
			t.Fatalf("call %d = %+v, want allowed with Remaining %d", i, r, want)
		}
	}
	for i, l := range limiters {
		if r := ratelimittest.MustAllow(t, l, p, key); r.Allowed {
			t.Fatalf("instance %d allowed a call beyond the shared budget: %+v", i, r)
		}
	}

	// At once: each token is spent once.
	if got := ratelimittest.CountAllowed(t, limiters, p, rand.Text(), 20, 5); got != p.Limit {
		t.Fatalf("%d calls allowed across two instances, want %d", got, p.Limit)
	}
}

// Buckets are Redis keys that expire once they would be full again, so
// memory stays bounded whatever keys clients send; a denied call does not
// extend them.
func TestBucketsExpire(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t, "rate limiter")
	prefix := redistest.Prefix(t, client)
	l := redislimit.New(client, redislimit.Options{Prefix: prefix})

	p := ratelimit.Policy{Name: "api", Limit: 2, Window: time.Minute}
	ratelimittest.MustAllow(t, l, p, "a very long key "+strings.Repeat("x", 10_000))
	keys := scanKeys(t, client, prefix)
	if len(keys) != 1 {
		t.Fatalf("keys under the prefix: %q, want one", keys)
	}
	bucket := keys[0]
	if !strings.HasPrefix(bucket, prefix+"api:") || len(bucket) != len(prefix+"api:")+32 {
		t.Errorf("bucket key %q, want %sapi: and 32 hex digits", bucket, prefix)
	}
	if ttl := client.PTTL(t.Context(), bucket).Val(); ttl <= 0 || ttl > p.Window {
		t.Fatalf("PTTL = %v after one call, want in (0, %v]", ttl, p.Window)
	}
	ratelimittest.MustAllow(t, l, p, "a very long key "+strings.Repeat("x", 10_000))
	ratelimittest.MustAllow(t, l, p, "a very long key "+strings.Repeat("x", 10_000)) // denied
	if ttl := client.PTTL(t.Context(), bucket).Val(); ttl <= p.Window/2 || ttl > p.Window {
		t.Fatalf("PTTL = %v with the bucket empty, want in (%v, %v]", ttl, p.Window/2, p.Window)
	}

	// In real time, short windows: every bucket is gone once full.
	short := ratelimit.Policy{Name: "short", Limit: 2, Window: 100 * time.Millisecond}
	for i := range 100 {
		ratelimittest.MustAllow(t, l, short, strconv.Itoa(i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		for _, k := range scanKeys(t, client, prefix) {
			if strings.HasPrefix(k, prefix+"short:") {
				n++
			}
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d buckets left 10s after they were full again", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A value the script did not write (another version, a stray SET) counts
// as a full bucket, and is replaced.
func TestUnreadableBucketIsFull(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t, "rate limiter")
	prefix := redistest.Prefix(t, client)
	l := redislimit.New(client, redislimit.Options{Prefix: prefix})
	p := ratelimit.Policy{Name: "api", Limit: 3, Window: time.Hour}
	ratelimittest.MustAllow(t, l, p, "k")
	keys := scanKeys(t, client, prefix)
	if len(keys) != 1 {
		t.Fatalf("keys under the prefix: %q, want one", keys)
	}
	if err := client.Set(t.Context(), keys[0], "garbage", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if r := ratelimittest.MustAllow(t, l, p, "k"); !r.Allowed || r.Remaining != p.Limit-1 {
		t.Fatalf("Allow = %+v, want allowed with Remaining %d", r, p.Limit-1)
	}
	if ttl := client.PTTL(t.Context(), keys[0]).Val(); ttl <= 0 || ttl > p.Window/time.Duration(p.Limit) {
		t.Fatalf("PTTL = %v, want one interval at most", ttl)
	}
}

// The script still runs after Redis forgot it (SCRIPT FLUSH, a restart):
// go-redis falls back from EVALSHA to EVAL. Not parallel: it flushes the
// script cache of the whole server.
func TestScriptFlushed(t *testing.T) {
	client := redistest.Client(t, "rate limiter")
	l := redislimit.New(client, redislimit.Options{Prefix: redistest.Prefix(t, client)})
	p := ratelimit.Policy{Name: "api", Limit: 3, Window: time.Hour}
	ratelimittest.MustAllow(t, l, p, "k")
	if err := client.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	if r := ratelimittest.MustAllow(t, l, p, "k"); !r.Allowed || r.Remaining != 1 {
		t.Fatalf("Allow after SCRIPT FLUSH = %+v, want allowed with Remaining 1", r)
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	rawURL := redistest.URL(t, "rate limiter")
	cleaner := redistest.Client(t, "rate limiter")
	prefix := redistest.Prefix(t, cleaner)
	l, err := redislimit.Open(t.Context(), rawURL, redislimit.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	p := ratelimit.Policy{Name: "api", Limit: 1, Window: time.Hour}
	if r := ratelimittest.MustAllow(t, l, p, "k"); !r.Allowed {
		t.Fatalf("Allow = %+v, want allowed", r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Allow(t.Context(), p, "k"); err == nil {
		t.Fatal("Allow after Close succeeded")
	}
}

// New leaves the client to its owner: Close does not close it.
func TestCloseLeavesClientOfNew(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t, "rate limiter")
	if err := redislimit.New(client, redislimit.Options{}).Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("the client was closed: %v", err)
	}
}

func BenchmarkAllow(b *testing.B) {
	client := redistest.Client(b, "rate limiter")
	l := redislimit.New(client, redislimit.Options{Prefix: redistest.Prefix(b, client)})
	p := ratelimit.Policy{Name: "api", Limit: 1_000_000_000, Window: time.Second}
	b.Run("SameKey", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Allow(b.Context(), p, "k"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("ManyKeys", func(b *testing.B) {
		keys := make([]string, 10_000)
		for i := range keys {
			keys[i] = "user-" + strconv.Itoa(i)
		}
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := l.Allow(b.Context(), p, keys[i%len(keys)]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}

func scanKeys(t *testing.T, client goredis.UniversalClient, prefix string) []string {
	t.Helper()
	keys, err := redistest.Keys(t.Context(), client, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// Open on a Redis that does not answer returns a value whose calls fail
// (so a service can start during an outage) and an error saying so. No
// Redis is needed.
func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	x, err := redislimit.Open(t.Context(), "redis://127.0.0.1:1/0", redislimit.Options{})
	if !errors.Is(err, redisconn.ErrUnreachable) || x == nil {
		t.Fatalf("Open: %v, %v; want a value and ErrUnreachable", x, err)
	}
	defer x.Close()
	_, err = x.Allow(t.Context(), ratelimit.Policy{Name: "api", Limit: 1, Window: time.Second}, "k")
	if err == nil {
		t.Fatal("a call to an unreachable Redis succeeded")
	}
}
