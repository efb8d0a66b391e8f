package app_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// BenchmarkCachedRead is the cached profile read, GET /v1/users/{id},
// through the whole production stack (request id, metrics, tracing, the
// access log as JSON, the shedder, the limiter, the timeout), next to "echo": a bare
// echo router answering a document as long from the same harness, as
// bench/baseline does for bench/run.sh. One request and one writer are
// reused, so what is allocated per op is the handler stack's (and echo's,
// which echo/op shows), not the harness's; the writer copies the header
// map when the status is written, as net/http's does, so every header set
// costs what it costs in production. The loop is sequential: allocs/op,
// ns/op and cpu-ns/op (the process's CPU time, which holds better than
// ns/op on a busy machine) are what to compare between two commits.
//
//	go test ./app -run '^$' -bench CachedRead -benchmem -count 5
func BenchmarkCachedRead(b *testing.B) {
	bd := newBundle(b, func(s *setup) {
		s.noWorkers, s.discardLogs = true, true
		s.metrics, s.tracing = true, true
		s.opts.AccessLog = true
		s.opts.MaxInFlight = 256 // config's default: the shedder runs
	})
	id, _ := bd.signup("bench")
	path := "/v1/users/" + id
	var size int
	b.Run("onebox", func(b *testing.B) {
		size = benchRead(b, bd.handler, path)
	})
	b.Run("echo", func(b *testing.B) {
		doc := []byte(`{"padding":"` + strings.Repeat("x", max(size-14, 0)) + `"}`)
		e := echo.New()
		e.GET("/v1/users/:id", func(c echo.Context) error { return c.JSONBlob(http.StatusOK, doc) })
		benchRead(b, e, path)
	})
}

// benchRead serves GET path with h b.N times and returns the body's size.
func benchRead(b *testing.B, h http.Handler, path string) int {
	ctx, cancel := context.WithCancel(context.Background()) // a connection's, as net/http gives
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.RemoteAddr, req.Host, req.RequestURI = "127.0.0.1:40000", "example.com", path
	req.Header.Set("User-Agent", "wrk")
	w := &headerWriter{}
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	return w.size
}

// headerWriter is an http.ResponseWriter that discards the body and, like
// net/http's, starts each response with a new header map and copies it
// when the status is written.
type headerWriter struct {
	header, sent http.Header
	code, size   int
}

func (w *headerWriter) reset() { w.header, w.sent, w.code, w.size = make(http.Header), nil, 0, 0 }

func (w *headerWriter) Header() http.Header { return w.header }

func (w *headerWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code, w.sent = code, w.header.Clone()
	}
}

func (w *headerWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.size += len(p)
	return len(p), nil
}
