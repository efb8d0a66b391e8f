package app_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// adminCall sends a request to the admin handler as if it arrived on a
// listener at local, with the bearer token if one is given.
func (b *bundle) adminCall(method, target, local, token string) *httptest.ResponseRecorder {
	b.t.Helper()
	req := httptest.NewRequest(method, target, nil)
	addr, err := net.ResolveTCPAddr("tcp", local)
	if err != nil {
		b.t.Fatal(err)
	}
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, addr))
	req.Host = local // as a client that dialled the listener names it
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	b.admin.ServeHTTP(rec, req)
	return rec
}

// opsToken is an operator token as long as configuration demands.
const opsToken = "s3cret-s3cret-s3cret-s3cret-s3cret"

// TestAdminAccess: the job queue and the metrics need the operator token
// on a listener other people can reach; health never does.
func TestAdminAccess(t *testing.T) {
	t.Parallel()
	open := newBundle(t, func(s *setup) { s.noWorkers, s.metrics = true, true })
	locked := newBundle(t, func(s *setup) { s.noWorkers, s.metrics, s.opts.OpsToken = true, true, opsToken })
	const public, loopback = "10.0.0.7:8081", "127.0.0.1:8081"
	tests := []struct {
		name           string
		b              *bundle
		method, target string
		local, token   string
		want           int
	}{
		{"health on a public listener", open, "GET", "/health/ready", public, "", 200},
		{"health with a token configured", locked, "GET", "/health/live", public, "", 200},
		{"metrics on loopback", open, "GET", "/metrics", loopback, "", 200},
		{"metrics on a public listener, no token configured", open, "GET", "/metrics", public, "", 403},
		{"jobs on a public listener, no token configured", open, "GET", "/jobs/stats", public, "", 403},
		{"retry on a public listener, no token configured", open, "POST", "/jobs/retry?all=true", public, "", 403},
		{"dead jobs without the token", locked, "GET", "/jobs/dead", public, "", 401},
		{"metrics with the token", locked, "GET", "/metrics", public, opsToken, 200},
		{"jobs with the token", locked, "GET", "/jobs/stats", public, opsToken, 200},
		{"retry with a wrong token", locked, "POST", "/jobs/retry?all=true", public, "nope", 401},
		{"retry with the token", locked, "POST", "/jobs/retry?all=true", public, opsToken, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tt.b.adminCall(tt.method, tt.target, tt.local, tt.token)
			if rec.Code != tt.want {
				t.Fatalf("%s %s: %d, want %d: %s", tt.method, tt.target, rec.Code, tt.want, rec.Body)
			}
		})
	}
}

// TestAdminFailuresLimited: requests to the admin listener without the
// right token share one budget per client address across its routes (10
// a minute): past it, 429 with Retry-After. The right token from another
// address is not limited.
func TestAdminFailuresLimited(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) { s.noWorkers, s.metrics, s.opts.OpsToken = true, true, opsToken })
	call := func(method, target, peer, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, nil)
		req.RemoteAddr = peer
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		b.admin.ServeHTTP(rec, req)
		return rec
	}
	const attacker, operator = "203.0.113.7:5000", "198.51.100.2:6000"
	targets := [][2]string{{"GET", "/metrics"}, {"GET", "/jobs/stats"}, {"GET", "/jobs/dead"}, {"POST", "/jobs/retry?all=true"}}
	for i := range 10 {
		tg := targets[i%len(targets)]
		if rec := call(tg[0], tg[1], attacker, "guess"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d on %s: %d, want 401", i, tg[1], rec.Code)
		}
	}
	for _, tg := range targets {
		rec := call(tg[0], tg[1], attacker, "guess")
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("%s past the budget: %d, Retry-After %q; want 429 with one", tg[1], rec.Code, rec.Header().Get("Retry-After"))
		}
	}
	for range 20 {
		if rec := call("GET", "/jobs/stats", operator, opsToken); rec.Code != http.StatusOK {
			t.Fatalf("operator: %d, want 200: %s", rec.Code, rec.Body)
		}
	}
	// Health needs no token and is never limited.
	if rec := call("GET", "/health/live", attacker, ""); rec.Code != http.StatusOK {
		t.Fatalf("health: %d", rec.Code)
	}
}
