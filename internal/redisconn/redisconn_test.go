package redisconn_test

import (
	"errors"
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
	tests := []struct {
		url, want   string
		unreachable bool // a client comes back, to connect later
	}{
		{"redis://:hunter2@127.0.0.1:1/0", "127.0.0.1:1", true},
		{"redis://:hunter2@127.0.0.1:bad/0", "parse URL", false},
		{"redis://127.0.0.1:6379/zero", "database", false},
		{"http://127.0.0.1:6379", "scheme", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			c, err := redisconn.Dial(t.Context(), tt.url)
			if c != nil {
				defer c.Close()
			}
			if err == nil {
				t.Fatal("Dial succeeded")
			}
			if got := errors.Is(err, redisconn.ErrUnreachable); got != tt.unreachable || (c != nil) != tt.unreachable {
				t.Fatalf("Dial: client %v, error %v; want ErrUnreachable and a client: %v", c != nil, err, tt.unreachable)
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
