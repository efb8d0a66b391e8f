package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/labstack/echo/v4"
)

// defaultBodyTimeout is Options.BodyTimeout when it is left zero.
const defaultBodyTimeout = 10 * time.Second

// Request bodies are read under a deadline, because net/http sets none:
// without one, a client that declares a body and never sends it holds a
// connection and a goroutine for ever (the handler may answer, but
// net/http then waits to discard the body before it writes the answer).
// A server-wide ReadTimeout would be one bound for every route, when an
// upload needs minutes and a JSON body seconds. So each request with a
// body gets a read deadline of its own through http.ResponseController,
// which lasts until the body is in.

// bodies is the middleware that reads every request body before the
// route's middleware and handler run: whole, into memory, at most
// MaxBodyBytes, within BodyTimeout, so a handler never waits on a client
// and the rate limiter and handlers see a complete body. A body that
// does not arrive in time is a 408, one too large a 413, both closing the
// connection. It runs inside observe, so a request waiting for its body
// counts in flight. The routes in a.streamed read their body as it comes
// (uploads): they get their own deadline instead (streamBody).
func (a *App) bodies(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength == 0 || req.Body == nil || req.Body == http.NoBody {
			return next(c) // GET and the like: nothing to wait for, and no cost
		}
		if d, ok := a.streamed[routeKey{req.Method, c.Path()}]; ok {
			return streamBody(c, next, d)
		}
		if err := readBody(c.Response(), req, a.opts.MaxBodyBytes, a.opts.BodyTimeout); err != nil {
			return err
		}
		return next(c)
	}
}

// readBody reads r's whole body, of at most max bytes, within timeout,
// and puts it back in r as an in-memory reader. It returns the 408 or 413
// problem (or a 400 when the client hung up) and marks the answer as the
// connection's last, since the rest of that body is still on the wire.
func readBody(w http.ResponseWriter, r *http.Request, max int64, timeout time.Duration) error {
	if r.ContentLength > max {
		w.Header().Set(echo.HeaderConnection, "close")
		return bodyTooLarge(max)
	}
	rc := http.NewResponseController(w)
	// ErrNotSupported comes only from writers without a connection (a
	// test's recorder), whose body is already in memory.
	_ = rc.SetReadDeadline(time.Now().Add(timeout))
	// Read as it arrives, not allocated from the declared length: memory
	// follows the bytes sent, not the client's claim.
	data, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	switch {
	case err != nil:
		w.Header().Set(echo.HeaderConnection, "close")
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return bodyTimeout(timeout)
		}
		return problem(http.StatusBadRequest, "bad-request", "the body could not be read")
	case int64(len(data)) > max:
		w.Header().Set(echo.HeaderConnection, "close")
		return bodyTooLarge(max)
	}
	// The body is in. The deadline needs no lifting: at the body's end
	// net/http starts its background read (which watches for the client
	// going away) with the deadline cleared, so a handler that outlasts
	// it is not cut off.
	r.Body = io.NopCloser(bytes.NewReader(data))
	return nil
}

// streamBody runs a handler that reads its body as it streams, with a
// read deadline of timeout. Whatever the handler makes of a body cut off
// at the deadline (a multipart error, an unreadable image header, a
// failed write to storage, an expired context), the answer is 408: the
// client was too slow, and that is neither a bad request nor a server
// error.
func streamBody(c echo.Context, next echo.HandlerFunc, timeout time.Duration) error {
	req := c.Request()
	deadline := time.Now().Add(timeout)
	_ = http.NewResponseController(c.Response()).SetReadDeadline(deadline)
	b := &eofBody{ReadCloser: req.Body}
	req.Body = b
	err := next(c)
	if err != nil && !b.eof && !time.Now().Before(deadline) {
		c.Response().Header().Set(echo.HeaderConnection, "close")
		return bodyTimeout(timeout)
	}
	return err
}

// eofBody is a request body that notes when it has been read to the end.
type eofBody struct {
	io.ReadCloser
	eof bool
}

func (b *eofBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func bodyTimeout(d time.Duration) *Problem {
	return problem(http.StatusRequestTimeout, "body-timeout", fmt.Sprintf("the request body did not arrive within %s", d))
}

func bodyTooLarge(max int64) *Problem {
	return problem(http.StatusRequestEntityTooLarge, "too-large", fmt.Sprintf("the body must be at most %d bytes", max))
}

// boundBodies is bodies for a plain net/http handler (the admin
// listener's).
func (a *App) boundBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			if err := readBody(w, r, a.opts.MaxBodyBytes, a.opts.BodyTimeout); err != nil {
				var p *Problem
				errors.As(err, &p)
				adminError(w, p.Status, p.Detail)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
