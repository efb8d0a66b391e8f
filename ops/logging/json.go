package logging

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap/zapcore"
)

// jsonHandler writes the lines of slog.JSONHandler, byte for byte, and
// formats the common ones itself: no group, every key and string value
// plain ASCII (nothing to escape), every value a string, an integer or a
// bool. That is every access log line, where slog's generic path (a
// handle state, a type switch and an escape check per attribute) was most
// of the line's cost. Anything else goes to slog.JSONHandler, which writes
// through the same lock, so lines never interleave.
type jsonHandler struct {
	slow  slog.Handler
	level slog.Leveler
	w     io.Writer // writes each line whole
}

func newJSONHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	if opts.ReplaceAttr != nil || opts.AddSource {
		return slog.NewJSONHandler(w, opts) // lines the fast path does not write
	}
	// The batch takes each Write whole under its own lock: a second lock
	// would be one more per access line.
	if _, whole := w.(*zapcore.BufferedWriteSyncer); !whole {
		w = &lockedWriter{w: w}
	}
	level := opts.Level
	if level == nil {
		level = slog.LevelInfo
	}
	return &jsonHandler{slow: slog.NewJSONHandler(w, opts), level: level, w: w}
}

func (h *jsonHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// WithAttrs and WithGroup give slog's handler: a logger with attributes
// of its own is not on a hot path here.
func (h *jsonHandler) WithAttrs(as []slog.Attr) slog.Handler { return h.slow.WithAttrs(as) }
func (h *jsonHandler) WithGroup(name string) slog.Handler    { return h.slow.WithGroup(name) }

var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (h *jsonHandler) Handle(ctx context.Context, r slog.Record) error {
	bp := linePool.Get().(*[]byte)
	b, ok := appendLine((*bp)[:0], r)
	if !ok {
		linePool.Put(bp)
		return h.slow.Handle(ctx, r)
	}
	_, err := h.w.Write(b)
	if cap(b) <= 16<<10 { // a huge line's buffer is not kept
		*bp = b
		linePool.Put(bp)
	}
	return err
}

// appendLine appends r as slog.JSONHandler (without ReplaceAttr or
// AddSource) writes it; ok is false if r is not of the plain kind.
func appendLine(b []byte, r slog.Record) (_ []byte, ok bool) {
	b = append(b, '{')
	if !r.Time.IsZero() {
		t := r.Time // AppendFormat shows no monotonic reading: no Round(0)
		if y := t.Year(); y < 0 || y >= 10000 {
			return b, false // slog writes an error in its place
		}
		b = append(b, `"time":"`...)
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `",`...)
	}
	level := r.Level.String()
	if !plain(level) || !plain(r.Message) {
		return b, false
	}
	b = append(b, `"level":"`...)
	b = append(b, level...)
	b = append(b, `","msg":"`...)
	b = append(b, r.Message...)
	b = append(b, '"')
	ok = true
	r.Attrs(func(a slog.Attr) bool {
		if !plain(a.Key) || a.Key == "" {
			ok = false
			return false
		}
		b = append(b, `,"`...)
		b = append(b, a.Key...)
		b = append(b, `":`...)
		switch v := a.Value; v.Kind() {
		case slog.KindString:
			s := v.String()
			if !plain(s) {
				ok = false
				return false
			}
			b = append(b, '"')
			b = append(b, s...)
			b = append(b, '"')
		case slog.KindInt64:
			b = strconv.AppendInt(b, v.Int64(), 10)
		case slog.KindUint64:
			b = strconv.AppendUint(b, v.Uint64(), 10)
		case slog.KindBool:
			b = strconv.AppendBool(b, v.Bool())
		default:
			ok = false
			return false
		}
		return true
	})
	return append(b, "}\n"...), ok
}

// plain reports whether s needs no escaping in a JSON string: printable
// ASCII without the quote and the backslash.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// lockedWriter makes each Write whole: a line is written in one call, so
// the fast path's lines and slog's never interleave.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
