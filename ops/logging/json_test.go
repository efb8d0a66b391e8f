package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

// TestJSONLikeSlog: every line, of the plain kind the fast path writes or
// not, is byte for byte what slog.JSONHandler writes.
func TestJSONLikeSlog(t *testing.T) {
	at := time.Date(2026, 12, 7, 2, 36, 32, 123456000, time.FixedZone("X", 3600))
	tests := []struct {
		name  string
		time  time.Time
		level slog.Level
		msg   string
		attrs []slog.Attr
		fast  bool // written by the fast path, not slog's
	}{
		{"access line", at, slog.LevelInfo, "request", []slog.Attr{
			slog.String("request_id", "4f2a"), slog.String("method", "GET"), slog.String("route", "/v1/users/:id"),
			slog.Int("status", 200), slog.Int64("duration_us", 87), slog.Int64("bytes", -1), slog.String("ip", "127.0.0.1"),
			slog.Uint64("u", 7), slog.Bool("b", true), slog.String("empty", ""),
		}, true},
		{"no attributes", at, slog.LevelWarn, "w", nil, true},
		{"no time", time.Time{}, slog.LevelInfo + 2, "m", []slog.Attr{slog.String("k", "v")}, true},
		{"whole nanoseconds", at.Add(789), slog.LevelDebug, "m", nil, true},
		{"monotonic reading", time.Now(), slog.LevelError, "m", nil, true},
		{"year 10000", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "m", nil, false},
		{"html is not escaped", at, slog.LevelInfo, "<a&b>", []slog.Attr{slog.String("k", "<&>")}, true},
		{"quote in a value", at, slog.LevelInfo, "m", []slog.Attr{slog.String("k", `a"b`)}, false},
		{"backslash in the message", at, slog.LevelInfo, `a\b`, nil, false},
		{"newline in a value", at, slog.LevelInfo, "m", []slog.Attr{slog.String("k", "a\nb")}, false},
		{"control byte in a key", at, slog.LevelInfo, "m", []slog.Attr{slog.String("k\x01", "v")}, false},
		{"utf-8", at, slog.LevelInfo, "é", []slog.Attr{slog.String("k", "ü\u2028")}, false},
		{"invalid utf-8", at, slog.LevelInfo, "m", []slog.Attr{slog.String("k", "a\xffb")}, false},
		{"empty key", at, slog.LevelInfo, "m", []slog.Attr{slog.String("", "v"), slog.Int("n", 1)}, false},
		{"empty attribute", at, slog.LevelInfo, "m", []slog.Attr{{}, slog.Int("n", 1)}, false},
		{"float", at, slog.LevelInfo, "m", []slog.Attr{slog.Float64("f", 1.5)}, false},
		{"duration", at, slog.LevelInfo, "m", []slog.Attr{slog.Duration("d", time.Second)}, false},
		{"time value", at, slog.LevelInfo, "m", []slog.Attr{slog.Time("t", at)}, false},
		{"error value", at, slog.LevelInfo, "m", []slog.Attr{slog.Any("err", errors.New("boom"))}, false},
		{"group", at, slog.LevelInfo, "m", []slog.Attr{slog.Group("g", slog.Int("n", 1))}, false},
		{"empty group (dropped by AddAttrs)", at, slog.LevelInfo, "m", []slog.Attr{slog.Group("g")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got, want bytes.Buffer
			opts := &slog.HandlerOptions{Level: slog.LevelDebug}
			r := slog.NewRecord(tt.time, tt.level, tt.msg, 0)
			r.AddAttrs(tt.attrs...)
			if err := newJSONHandler(&got, opts).Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			if err := slog.NewJSONHandler(&want, opts).Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			if _, fast := appendLine(nil, r); fast != tt.fast {
				t.Errorf("fast path %v, want %v", fast, tt.fast)
			}
			if got.String() != want.String() {
				t.Errorf("got  %s\nwant %s", got.String(), want.String())
			}
		})
	}
}

// TestJSONLevelAndWith: the handler keeps slog's level filtering, and a
// logger with attributes or a group of its own writes what slog's would.
func TestJSONLevelAndWith(t *testing.T) {
	var got, want bytes.Buffer
	opts := &slog.HandlerOptions{Level: slog.LevelWarn}
	for _, l := range []*slog.Logger{slog.New(newJSONHandler(&got, opts)), slog.New(slog.NewJSONHandler(&want, opts))} {
		l.Info("hidden")
		l.Warn("shown", "n", 1)
		l.With("k", "v").WithGroup("g").Error("with", "n", 2)
	}
	noTime := regexp.MustCompile(`"time":"[^"]*"`)
	g, w := noTime.ReplaceAllString(got.String(), "T"), noTime.ReplaceAllString(want.String(), "T")
	if g != w || strings.Contains(g, "hidden") {
		t.Errorf("got  %s\nwant %s", g, w)
	}
	if !slog.New(newJSONHandler(&got, &slog.HandlerOptions{})).Enabled(context.Background(), slog.LevelInfo) {
		t.Error("no level: info is not enabled, want slog's default")
	}
}

// TestJSONLinesWhole: lines the fast path writes and lines slog writes,
// from many goroutines, never interleave, on a writer of no lock of its
// own and on the batch (which locks each Write itself). Run with -race.
func TestJSONLinesWhole(t *testing.T) {
	tests := []struct {
		name string
		w    func(*bytes.Buffer) (io.Writer, func() error)
	}{
		{"plain writer", func(b *bytes.Buffer) (io.Writer, func() error) { return b, func() error { return nil } }},
		{"batch", func(b *bytes.Buffer) (io.Writer, func() error) {
			bw := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(b), FlushInterval: time.Hour}
			return bw, bw.Stop
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			w, stop := tt.w(&b)
			l := slog.New(newJSONHandler(w, &slog.HandlerOptions{}))
			const goroutines, lines = 4, 200
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					for i := range lines {
						if i%2 == 0 {
							l.Info("fast", "i", i)
						} else {
							l.Info(`slow "quoted"`, "i", i)
						}
					}
				})
			}
			wg.Wait()
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			n := 0
			for line := range strings.Lines(b.String()) {
				if !json.Valid([]byte(line)) {
					t.Fatalf("line %d is not JSON: %q", n, line)
				}
				n++
			}
			if n != goroutines*lines {
				t.Errorf("%d lines, want %d", n, goroutines*lines)
			}
		})
	}
}
