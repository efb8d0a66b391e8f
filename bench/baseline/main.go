// Command baseline is the yardstick of bench/run.sh: a bare echo v4
// server with no middleware whose one route, GET /v1/users/:id, returns a
// fixed JSON document of -size bytes (run.sh passes the size of a real
// onebox profile response). What onebox loses against it is the cost of
// its middleware, cache, store and encoding.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen address")
	size := flag.Int("size", 300, "bytes of the JSON document served")
	flag.Parse()
	doc, err := document(*size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(2)
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/v1/users/:id", func(c echo.Context) error {
		return c.JSONBlob(http.StatusOK, doc)
	})
	// The same server settings as onebox's main.go, so only the handler
	// stack differs.
	srv := &http.Server{Addr: *addr, Handler: e, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

// document returns a JSON object of exactly size bytes, shaped like a
// profile: an id, then padding.
func document(size int) ([]byte, error) {
	const head = `{"id":"01900000-0000-7000-8000-000000000000","padding":"`
	const tail = `"}`
	pad := size - len(head) - len(tail)
	if pad < 0 {
		return nil, fmt.Errorf("-size %d: want at least %d", size, len(head)+len(tail))
	}
	return []byte(head + strings.Repeat("x", pad) + tail), nil
}
