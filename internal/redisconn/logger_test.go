package redisconn_test

import (
	"log/slog"
	"strings"
	"testing"

	"onebox/internal/redisconn"
	"onebox/internal/syncbuf"
)

// TestSetLogger: what go-redis logs (here, its pool failing to dial)
// comes out of slog as JSON lines marked as go-redis's, not as plain
// text on stderr. Not parallel: go-redis's logger is process-wide.
func TestSetLogger(t *testing.T) {
	var buf syncbuf.Buffer
	redisconn.SetLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(func() { redisconn.SetLogger(slog.New(slog.DiscardHandler)) })
	if c, _ := redisconn.Dial(t.Context(), "redis://127.0.0.1:1/0"); c != nil {
		c.Close()
	}
	lines, err := buf.JSONLines()
	if err != nil {
		t.Fatalf("not JSON: %v\n%s", err, buf.String())
	}
	for _, l := range lines {
		if msg, _ := l["msg"].(string); l["component"] == "go-redis" && l["level"] == "WARN" && strings.Contains(msg, "failed to dial") {
			return
		}
	}
	t.Fatalf("no go-redis line in %q", buf.String())
}
