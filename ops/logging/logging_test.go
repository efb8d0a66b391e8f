package logging_test

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"onebox/internal/syncbuf"
	"onebox/ops/logging"
)

// messages are the msg fields of the JSON lines written to b so far.
func messages(t *testing.T, b *syncbuf.Buffer) []string {
	t.Helper()
	lines, err := b.JSONLines()
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, m := range lines {
		msg, _ := m["msg"].(string)
		msgs = append(msgs, msg)
	}
	return msgs
}

func TestBatching(t *testing.T) {
	tests := []struct {
		name  string
		every time.Duration
		log   func(*slog.Logger)
		want  []string // written before stop
		all   []string // written once stopped
	}{
		{
			name: "unbatched lines are written at once",
			log:  func(l *slog.Logger) { l.Info("a"); l.Debug("hidden"); l.Info("b") },
			want: []string{"a", "b"},
			all:  []string{"a", "b"},
		},
		{
			name:  "info lines wait for the batch",
			every: time.Hour,
			log:   func(l *slog.Logger) { l.Info("a"); l.Info("b") },
			all:   []string{"a", "b"},
		},
		{
			name:  "a warning writes the lines before it and itself",
			every: time.Hour,
			log:   func(l *slog.Logger) { l.Info("a"); l.Warn("w"); l.Info("b") },
			want:  []string{"a", "w"},
			all:   []string{"a", "w", "b"},
		},
		{
			name:  "an error does too, through With",
			every: time.Hour,
			log:   func(l *slog.Logger) { l.Info("a"); l.With("k", 1).WithGroup("g").Error("e") },
			want:  []string{"a", "e"},
			all:   []string{"a", "e"},
		},
		{
			name:  "a full batch is written",
			every: time.Hour,
			log: func(l *slog.Logger) {
				for range 2 {
					l.Info("big", "pad", strings.Repeat("x", 40<<10))
				}
			},
			want: []string{"big"},
			all:  []string{"big", "big"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncbuf.Buffer
			l, stop := logging.New(&out, logging.Options{Level: slog.LevelInfo, FlushEvery: tt.every})
			tt.log(l)
			if got := messages(t, &out); !slices.Equal(got, tt.want) {
				t.Errorf("before stop: %q, want %q", got, tt.want)
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if got := messages(t, &out); !slices.Equal(got, tt.all) {
				t.Errorf("after stop: %q, want %q", got, tt.all)
			}
		})
	}
}

func TestFlushEvery(t *testing.T) {
	var out syncbuf.Buffer
	l, stop := logging.New(&out, logging.Options{Level: slog.LevelInfo, FlushEvery: 10 * time.Millisecond})
	defer stop()
	l.Info("a")
	for deadline := time.Now().Add(10 * time.Second); out.String() == ""; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the line was not written within 10s of a 10ms flush interval")
		}
	}
	if got := messages(t, &out); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("got %q", got)
	}
}

func TestText(t *testing.T) {
	var out syncbuf.Buffer
	l, stop := logging.New(&out, logging.Options{Format: "text", FlushEvery: time.Hour})
	l.Info("hello", "k", "v")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "msg=hello k=v") {
		t.Fatalf("got %q", got)
	}
}

// failOnce fails its first write, then writes to Buffer.
type failOnce struct {
	syncbuf.Buffer
	failed atomic.Bool
}

func (f *failOnce) Write(p []byte) (int, error) {
	if !f.failed.Swap(true) {
		return 0, errors.New("no space left on device")
	}
	return f.Buffer.Write(p)
}

// TestWriteErrorDoesNotStick: after a failed write the next lines are
// written; only the failed batch is lost.
func TestWriteErrorDoesNotStick(t *testing.T) {
	out := &failOnce{}
	l, stop := logging.New(out, logging.Options{Level: slog.LevelInfo, FlushEvery: time.Hour})
	l.Warn("lost")
	l.Warn("kept")
	l.Info("batched")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := messages(t, &out.Buffer); !slices.Equal(got, []string{"kept", "batched"}) {
		t.Fatalf("got %q, want the lines after the failed write", got)
	}
}
