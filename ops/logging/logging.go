// Package logging builds onebox's logger: log/slog lines, JSON or text,
// written in batches. At thousands of requests a second one write per
// access line was a tenth of a profile read's CPU; batching them is what
// nginx's access_log buffer= and flush= do.
package logging

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"go.uber.org/zap/zapcore"
)

// bufferSize is the most a batch holds before it is written: a Linux
// pipe's buffer, so a reader that keeps up takes a batch in one read.
const bufferSize = 64 << 10

// Options configure New.
type Options struct {
	Level  slog.Level
	Format string // "json" (the default) or "text"
	// FlushEvery is how long a line may wait in the batch before it is
	// written. A line at slog.LevelWarn or above is written at once,
	// with every line before it. Zero writes each line as it is logged.
	FlushEvery time.Duration
}

// New returns a logger on w and a function that writes what is still
// batched and stops batching; call it before the process exits. Lines
// that wait in the batch are lost if the process is killed: at most
// FlushEvery's worth of lines below LevelWarn.
func New(w io.Writer, o Options) (*slog.Logger, func() error) {
	if o.FlushEvery <= 0 {
		return slog.New(handler(w, o)), func() error { return nil }
	}
	bw := &zapcore.BufferedWriteSyncer{
		WS:            zapcore.AddSync(forgetful{w}),
		Size:          bufferSize,
		FlushInterval: o.FlushEvery,
	}
	return slog.New(urgent{Handler: handler(bw, o), flush: bw.Sync}), bw.Stop
}

func handler(w io.Writer, o Options) slog.Handler {
	opts := &slog.HandlerOptions{Level: o.Level}
	if o.Format == "text" {
		return slog.NewTextHandler(w, opts)
	}
	return newJSONHandler(w, opts)
}

// urgent writes the batch out after each line at LevelWarn or above, so
// a warning or an error is on the way before the handler returns.
type urgent struct {
	slog.Handler
	flush func() error
}

func (h urgent) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		err = errors.Join(err, h.flush())
	}
	return err
}

func (h urgent) WithAttrs(attrs []slog.Attr) slog.Handler {
	return urgent{Handler: h.Handler.WithAttrs(attrs), flush: h.flush}
}

func (h urgent) WithGroup(name string) slog.Handler {
	return urgent{Handler: h.Handler.WithGroup(name), flush: h.flush}
}

// forgetful hides w's errors from the batch's bufio.Writer, which would
// keep the first one and refuse every later write: one failed write
// (a full disk) would silence the log, warnings too, until a restart.
// A failed batch is lost; the next one is tried afresh. It also hides an
// *os.File's Sync from zapcore.AddSync, which would fsync per warning.
type forgetful struct{ w io.Writer }

func (f forgetful) Write(p []byte) (int, error) {
	_, _ = f.w.Write(p) // a log write that fails has nowhere to report to
	return len(p), nil
}
