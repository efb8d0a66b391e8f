// Package ratelimittest is the conformance suite that every
// ratelimit.Limiter implementation runs from its own tests.
package ratelimittest

import (
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onebox/ratelimit"
)

// slack absorbs the rounding of a backend that keeps coarser time than
// nanoseconds (a Redis script may use milliseconds).
const slack = time.Second

// Run checks the behaviour every Limiter must have. newLimiter may return
// a fresh Limiter or one shared by the cases: each case uses its own keys.
// The cases run in parallel, in real time, with windows long or short
// enough that a slow machine cannot change the outcome.
func Run(t *testing.T, newLimiter func(t *testing.T) ratelimit.Limiter) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, l ratelimit.Limiter)
	}{
		{"Burst", testBurst},
		{"DeniedDoesNotSpend", testDeniedDoesNotSpend},
		{"Independent", testIndependent},
		{"Refill", testRefill},
		{"Concurrent", testConcurrent},
		{"InvalidPolicy", testInvalidPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newLimiter(t))
		})
	}
}

// A full bucket allows Limit calls, counting Remaining down, then denies.
func testBurst(t *testing.T, l ratelimit.Limiter) {
	p := ratelimit.Policy{Name: "test", Limit: 5, Window: time.Hour}
	key := uniqueKey(t)
	for want := p.Limit - 1; want >= 0; want-- {
		r := MustAllow(t, l, p, key)
		if !r.Allowed || r.Remaining != want || r.Limit != p.Limit {
			t.Fatalf("Allow = %+v, want allowed with Remaining %d and Limit %d", r, want, p.Limit)
		}
		if r.Reset <= 0 || r.Reset > p.Window+slack {
			t.Errorf("Allow = %+v, want Reset in (0, %v]", r, p.Window)
		}
	}
	r := MustAllow(t, l, p, key)
	if r.Allowed || r.Remaining != 0 || r.Limit != p.Limit {
		t.Fatalf("Allow = %+v, want denied with Remaining 0 and Limit %d", r, p.Limit)
	}
	if perToken := p.Window / time.Duration(p.Limit); r.RetryAfter <= 0 || r.RetryAfter > perToken+slack {
		t.Errorf("RetryAfter = %v, want in (0, %v]", r.RetryAfter, perToken)
	}
	if r.Reset <= 0 || r.Reset > p.Window+slack {
		t.Errorf("Reset = %v, want in (0, %v]", r.Reset, p.Window)
	}
}

// Denied calls take nothing, so they do not push the next token back.
func testDeniedDoesNotSpend(t *testing.T, l ratelimit.Limiter) {
	p := ratelimit.Policy{Name: "test", Limit: 1, Window: time.Hour}
	key := uniqueKey(t)
	MustAllow(t, l, p, key)
	first := MustAllow(t, l, p, key)
	for range 10 {
		r := MustAllow(t, l, p, key)
		if r.Allowed || r.RetryAfter > first.RetryAfter || r.Reset > first.Reset {
			t.Fatalf("Allow = %+v after denial %+v, want denied no later", r, first)
		}
	}
}

// Buckets are per (policy name, key).
func testIndependent(t *testing.T, l ratelimit.Limiter) {
	p := ratelimit.Policy{Name: "test", Limit: 1, Window: time.Hour}
	key := uniqueKey(t)
	MustAllow(t, l, p, key)
	if r := MustAllow(t, l, p, key); r.Allowed {
		t.Fatalf("second Allow = %+v, want denied", r)
	}
	other := p
	other.Name = "other"
	for _, c := range []struct {
		p   ratelimit.Policy
		key string
	}{
		{p, uniqueKey(t)},
		{other, key},
	} {
		if r := MustAllow(t, l, c.p, c.key); !r.Allowed || r.Remaining != 0 {
			t.Errorf("Allow(%q, %q) = %+v, want allowed with Remaining 0", c.p.Name, c.key, r)
		}
	}
}

// An exhausted bucket allows again once a token has refilled.
func testRefill(t *testing.T, l ratelimit.Limiter) {
	p := ratelimit.Policy{Name: "test", Limit: 2, Window: 200 * time.Millisecond}
	key := uniqueKey(t)
	// A stalled machine may refill a token between calls, so spend until
	// denied rather than exactly Limit times.
	var denied ratelimit.Result
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatalf("still allowed after %d calls", i)
		}
		if denied = MustAllow(t, l, p, key); !denied.Allowed {
			break
		}
	}
	if perToken := p.Window / time.Duration(p.Limit); denied.RetryAfter <= 0 || denied.RetryAfter > perToken+slack {
		t.Errorf("RetryAfter = %v, want in (0, %v]", denied.RetryAfter, perToken)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !MustAllow(t, l, p, key).Allowed {
		if time.Now().After(deadline) {
			t.Fatal("not allowed again within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Concurrent calls spend each token once.
func testConcurrent(t *testing.T, l ratelimit.Limiter) {
	const goroutines, calls = 50, 10
	p := ratelimit.Policy{Name: "test", Limit: 100, Window: time.Hour}
	if got := CountAllowed(t, []ratelimit.Limiter{l}, p, uniqueKey(t), goroutines, calls); got != p.Limit {
		t.Errorf("%d of %d calls allowed, want %d", got, goroutines*calls, p.Limit)
	}
}

// CountAllowed makes calls calls of Allow(p, key) on each of goroutines
// goroutines at once, goroutine g on limiters[g % len(limiters)] (several
// instances sharing one budget), and returns how many were allowed. A
// failed call fails the test.
func CountAllowed(t *testing.T, limiters []ratelimit.Limiter, p ratelimit.Policy, key string, goroutines, calls int) int {
	t.Helper()
	var (
		allowed atomic.Int64
		wg      sync.WaitGroup
	)
	for g := range goroutines {
		wg.Go(func() {
			for range calls {
				r, err := limiters[g%len(limiters)].Allow(t.Context(), p, key)
				if err != nil {
					t.Errorf("Allow: %v", err)
					return
				}
				if r.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(allowed.Load())
}

// Allow rejects a policy that fails Validate.
func testInvalidPolicy(t *testing.T, l ratelimit.Limiter) {
	for _, p := range []ratelimit.Policy{
		{Limit: 1, Window: time.Second},
		{Name: "test", Limit: 0, Window: time.Second},
		{Name: "test", Limit: 1, Window: 0},
	} {
		_, err := l.Allow(t.Context(), p, uniqueKey(t))
		if !errors.Is(err, ratelimit.ErrInvalidPolicy) {
			t.Errorf("Allow(%+v) = %v, want ErrInvalidPolicy", p, err)
		}
	}
}

// MustAllow calls l.Allow and fails the test on an error.
func MustAllow(t *testing.T, l ratelimit.Limiter, p ratelimit.Policy, key string) ratelimit.Result {
	t.Helper()
	r, err := l.Allow(t.Context(), p, key)
	if err != nil {
		t.Fatalf("Allow(%q, %q): %v", p.Name, key, err)
	}
	return r
}

// uniqueKey returns a key no other test or run uses, so backends shared
// between them (one Redis) cannot cross-talk.
func uniqueKey(t *testing.T) string {
	return t.Name() + "/" + rand.Text()
}
