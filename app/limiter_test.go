package app_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"onebox/ratelimit"
)

// failingLimiter fails every Allow while fail is set, like a shared
// limiter whose Redis is away.
type failingLimiter struct {
	ratelimit.Limiter
	fail atomic.Bool
}

func (l *failingLimiter) Allow(ctx context.Context, p ratelimit.Policy, key string) (ratelimit.Result, error) {
	if l.fail.Load() {
		return ratelimit.Result{}, errors.New("limiter backend unreachable")
	}
	return l.Limiter.Allow(ctx, p, key)
}

// TestLimiterFailsOpen: when the limiter backend fails, requests go
// through unlimited (availability over strictness), and each failure is
// counted (result "error" in onebox_ratelimit_requests_total, which
// the dashboard reads) and logged.
func TestLimiterFailsOpen(t *testing.T) {
	t.Parallel()
	fl := &failingLimiter{}
	b := newBundle(t, func(s *setup) {
		s.metrics = true
		s.opts.Policies.API = ratelimit.Policy{Name: "api", Limit: 1, Window: time.Hour}
		s.opts.Policies.Auth = ratelimit.Policy{Name: "auth", Limit: 1, Window: time.Hour}
		s.wrapLimiter = func(l ratelimit.Limiter) ratelimit.Limiter { fl.Limiter = l; return fl }
	})
	// Healthy, the limits hold: the second request of each is refused.
	mustStatus(t, b.do("GET", "/v1/users", ""), http.StatusOK)
	mustStatus(t, b.do("GET", "/v1/users", ""), http.StatusTooManyRequests)
	mustStatus(t, b.do("POST", "/v1/users", `{"handle":"open1","password":"correct horse"}`), http.StatusCreated)
	mustStatus(t, b.do("POST", "/v1/users", `{"handle":"open2","password":"correct horse"}`), http.StatusTooManyRequests)
	text := b.scrape(t)
	for _, series := range []string{`onebox_ratelimit_requests_total{policy="api",result="error"}`, `onebox_ratelimit_requests_total{policy="auth",result="error"}`} {
		if got := sample(text, series); got != "" && got != "0" {
			t.Fatalf("%s = %s before any failure", series, got)
		}
	}

	fl.fail.Store(true)
	for range 3 {
		r := b.do("GET", "/v1/users", "")
		mustStatus(t, r, http.StatusOK)
		if r.Header.Get("RateLimit") != "" {
			t.Errorf("RateLimit %q without a decision", r.Header.Get("RateLimit"))
		}
	}
	mustStatus(t, b.do("POST", "/v1/users", `{"handle":"open3","password":"correct horse"}`), http.StatusCreated)
	text = b.scrape(t)
	for series, want := range map[string]string{
		`onebox_ratelimit_requests_total{policy="api",result="error"}`:     "3",
		`onebox_ratelimit_requests_total{policy="auth",result="error"}`:    "1",
		`onebox_ratelimit_requests_total{policy="api",result="allowed"}`:   "1", // only real decisions
		`onebox_ratelimit_requests_total{policy="api",result="rejected"}`:  "1",
		`onebox_ratelimit_requests_total{policy="auth",result="allowed"}`:  "1",
		`onebox_ratelimit_requests_total{policy="auth",result="rejected"}`: "1",
	} {
		if got := sample(text, series); got != want {
			t.Errorf("%s = %q, want %q", series, got, want)
		}
	}
	if n := strings.Count(b.logs.String(), "rate limiter failed"); n != 4 {
		t.Errorf("%d limiter failures logged, want 4", n)
	}

	// Back, the limits hold again.
	fl.fail.Store(false)
	mustStatus(t, b.do("GET", "/v1/users", ""), http.StatusTooManyRequests)
}
