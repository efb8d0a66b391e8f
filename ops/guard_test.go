package ops_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"onebox/ops"
	"onebox/ratelimit"
)

func TestGuard(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	tests := []struct {
		name   string
		token  string
		local  string // the listener's address the request arrived on
		target string
		auth   string
		want   int
		method string            // default GET
		host   string            // default the local address
		header map[string]string // more request headers
	}{
		{"loopback needs no token", "", "127.0.0.1:8081", "/x", "", 204, "", "", nil},
		{"loopback v6", "", "[::1]:8081", "/x", "", 204, "", "", nil},
		{"v4-mapped loopback", "", "[::ffff:127.0.0.1]:8081", "/x", "", 204, "", "", nil},
		{"public address without a configured token", "", "10.1.2.3:8081", "/x", "", 403, "", "", nil},
		{"public address, even with a bearer", "", "10.1.2.3:8081", "/x", "Bearer anything", 403, "", "", nil},
		{"public address, bearer", "s3cret", "10.1.2.3:8081", "/x", "Bearer s3cret", 204, "", "", nil},
		{"bearer scheme in any case", "s3cret", "10.1.2.3:8081", "/x", "bearer s3cret", 204, "", "", nil},
		{"public address, query token", "s3cret", "10.1.2.3:8081", "/x?token=s3cret", "", 204, "", "", nil},
		{"wrong token", "s3cret", "10.1.2.3:8081", "/x", "Bearer nope", 401, "", "", nil},
		{"basic auth is not the token", "s3cret", "10.1.2.3:8081", "/x", "Basic s3cret", 401, "", "", nil},
		{"no token", "s3cret", "10.1.2.3:8081", "/x", "", 401, "", "", nil},
		{"a configured token is required on loopback too", "s3cret", "127.0.0.1:8081", "/x", "", 401, "", "", nil},
		{"no local address", "", "", "/x", "", 403, "", "example.com", nil},
		{"loopback with localhost", "", "127.0.0.1:8081", "/x", "", 204, "", "localhost:8081", nil},
		{"loopback with a rebound name", "", "127.0.0.1:8081", "/x", "", 403, "", "evil.example:8081", nil},
		{"a token works under any name", "s3cret", "127.0.0.1:8081", "/x", "Bearer s3cret", 204, "", "ops.example:8081", nil},
		{"curl's POST", "", "127.0.0.1:8081", "/x", "", 204, "POST", "", nil},
		{"same-origin POST", "", "127.0.0.1:8081", "/x", "", 204, "POST", "", map[string]string{"Origin": "http://127.0.0.1:8081"}},
		{"cross-origin POST", "", "127.0.0.1:8081", "/x", "", 403, "POST", "", map[string]string{"Origin": "http://evil.example"}},
		{"cross-origin POST with the token", "s3cret", "10.1.2.3:8081", "/x", "Bearer s3cret", 403, "POST", "", map[string]string{"Origin": "http://evil.example"}},
		{"cross-site fetch without Origin", "", "127.0.0.1:8081", "/x", "", 403, "DELETE", "", map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"cross-origin GET reads nothing it may not", "", "127.0.0.1:8081", "/x", "", 204, "", "", map[string]string{"Origin": "http://evil.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "GET"
			}
			req := httptest.NewRequest(method, tt.target, nil)
			req.Host = tt.local
			if tt.host != "" {
				req.Host = tt.host
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if tt.local != "" {
				addr, err := net.ResolveTCPAddr("tcp", tt.local)
				if err != nil {
					t.Fatal(err)
				}
				req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, addr))
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			w := httptest.NewRecorder()
			ops.NewGuard(ops.GuardOptions{Token: tt.token}).Wrap(ok).ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Fatalf("%d, want %d: %s", w.Code, tt.want, w.Body)
			}
			if w.Code >= 400 && w.Header().Get("Content-Type") != "application/problem+json" {
				t.Errorf("Content-Type %q, want a problem", w.Header().Get("Content-Type"))
			}
			if w.Code == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// TestGuardLimitsFailures: requests without the right token are limited
// per client address (IPv6 by /64); past the budget the address gets
// 429 with Retry-After even with the right token, so a right guess looks
// like a wrong one, until a failure is allowed again. The right token
// from other addresses is never limited, however often it comes.
func TestGuardLimitsFailures(t *testing.T) {
	t.Parallel()
	const token = "0123456789abcdef0123456789abcdef"
	var offset atomic.Int64
	g := ops.NewGuard(ops.GuardOptions{
		Token:    token,
		Failures: ratelimit.Policy{Name: "ops-auth", Limit: 3, Window: time.Minute},
		Now:      func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
	})
	h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	call := func(peer, bearer string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/x", nil)
		req.RemoteAddr = peer
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	const attacker, operator = "203.0.113.7:5000", "198.51.100.2:6000"
	for i := range 3 {
		if w := call(attacker, fmt.Sprintf("guess%d", i)); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, w.Code)
		}
	}
	for _, bearer := range []string{"guess3", "", token} {
		w := call(attacker, bearer)
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "20" || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("past the budget with %q: %d Retry-After %q, want 429 after 20 s", bearer, w.Code, w.Header().Get("Retry-After"))
		}
	}
	for range 10 {
		if w := call(operator, token); w.Code != http.StatusNoContent {
			t.Fatalf("operator: %d, want 204", w.Code)
		}
	}
	if w := call(operator, "typo"); w.Code != http.StatusUnauthorized {
		t.Fatalf("operator's first failure: %d, want 401", w.Code)
	}
	// Another address in the attacker's /64 shares its budget; IPv4
	// neighbours do not.
	for range 4 {
		call("[2001:db8:1:2::1]:1", "guess")
	}
	if w := call("[2001:db8:1:2::ffff]:1", token); w.Code != http.StatusTooManyRequests {
		t.Fatalf("same /64: %d, want 429", w.Code)
	}
	// A failure's worth of budget later, the right token works again.
	offset.Store(int64(20 * time.Second))
	if w := call(attacker, token); w.Code != http.StatusNoContent {
		t.Fatalf("after Retry-After: %d, want 204", w.Code)
	}
}
