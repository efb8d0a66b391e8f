package redisconn_test

import (
	"strings"
	"testing"
	"time"

	"onebox/internal/redisconn"
)

// Dial fails, naming the address and not the password, when nothing
// answers or the URL is bad; within seconds, not go-redis's default
// retries. No Redis is needed.
func TestDialFails(t *testing.T) {
	t.Parallel()
	tests := []struct{ url, want string }{
		{"redis://:hunter2@127.0.0.1:1/0", "127.0.0.1:1"},
		{"redis://:hunter2@127.0.0.1:bad/0", "parse URL"},
		{"redis://127.0.0.1:6379/zero", "database"},
		{"http://127.0.0.1:6379", "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			c, err := redisconn.Dial(t.Context(), tt.url)
			if err == nil {
				_ = c.Close()
				t.Fatal("Dial succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("Dial: %v; want an error naming %q, without the password", err, tt.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("Dial took %v to fail", d)
			}
		})
	}
}
