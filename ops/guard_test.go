package ops_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"onebox/ops"
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
	}{
		{"loopback needs no token", "", "127.0.0.1:8081", "/x", "", 204},
		{"loopback v6", "", "[::1]:8081", "/x", "", 204},
		{"v4-mapped loopback", "", "[::ffff:127.0.0.1]:8081", "/x", "", 204},
		{"public address without a configured token", "", "10.1.2.3:8081", "/x", "", 403},
		{"public address, even with a bearer", "", "10.1.2.3:8081", "/x", "Bearer anything", 403},
		{"public address, bearer", "s3cret", "10.1.2.3:8081", "/x", "Bearer s3cret", 204},
		{"bearer scheme in any case", "s3cret", "10.1.2.3:8081", "/x", "bearer s3cret", 204},
		{"public address, query token", "s3cret", "10.1.2.3:8081", "/x?token=s3cret", "", 204},
		{"wrong token", "s3cret", "10.1.2.3:8081", "/x", "Bearer nope", 401},
		{"basic auth is not the token", "s3cret", "10.1.2.3:8081", "/x", "Basic s3cret", 401},
		{"no token", "s3cret", "10.1.2.3:8081", "/x", "", 401},
		{"a configured token is required on loopback too", "s3cret", "127.0.0.1:8081", "/x", "", 401},
		{"no local address", "", "", "/x", "", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tt.target, nil)
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
			ops.Guard(tt.token, ok).ServeHTTP(w, req)
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
