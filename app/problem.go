package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/trace"

	"onebox/cache"
	"onebox/store"
)

// FieldError points at one invalid member of a request (RFC 6901 pointer
// into the JSON body, or a query parameter name).
type FieldError struct {
	Pointer   string `json:"pointer,omitempty"`
	Parameter string `json:"parameter,omitempty"`
	Header    string `json:"header,omitempty"`
	Detail    string `json:"detail"`
}

// Problem is an RFC 9457 problem detail, and the error type handlers
// return for anything the client can fix.
type Problem struct {
	Type       string       `json:"type"`
	Title      string       `json:"title"`
	Status     int          `json:"status"`
	Detail     string       `json:"detail,omitempty"`
	Instance   string       `json:"instance,omitempty"`
	RequestID  string       `json:"request_id,omitempty"`
	Errors     []FieldError `json:"errors,omitempty"`
	retryAfter time.Duration

	// ErrorsOmitted counts the field errors found beyond those listed:
	// the list stops at maxFieldErrors, so a body of a thousand unknown
	// members gets a short answer, not its own echo.
	ErrorsOmitted int `json:"errors_omitted,omitempty"`
}

func (p *Problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail) }

// problem builds a Problem whose type is a stable relative URI per kind.
func problem(status int, kind, detail string) *Problem {
	return &Problem{Type: "/problems/" + kind, Title: http.StatusText(status), Status: status, Detail: detail}
}

// A problem lists at most maxFieldErrors field errors, each pointer at
// most maxPointerBytes long, so the answer to a hostile body (thousands
// of unknown members, names of kilobytes, arrays nested thousands deep)
// stays small instead of echoing it.
const (
	maxFieldErrors  = 20
	maxPointerBytes = 128
)

// invalid is a 422 listing errs: the first maxFieldErrors of them, the
// rest only counted. A pointer too long to repeat is cut to the enclosing
// member's (still a true pointer, at what contains the error).
func invalid(errs ...FieldError) *Problem {
	p := problem(http.StatusUnprocessableEntity, "validation", "the request has invalid fields")
	if len(errs) > maxFieldErrors {
		p.ErrorsOmitted = len(errs) - maxFieldErrors
		errs = errs[:maxFieldErrors]
	}
	p.Errors = make([]FieldError, len(errs))
	for i, e := range errs {
		if len(e.Pointer) > maxPointerBytes {
			// Cut at a '/': names escape theirs as ~1, so this ends a
			// whole reference token, and the prefix is valid UTF-8.
			e.Pointer = e.Pointer[:max(strings.LastIndexByte(e.Pointer[:maxPointerBytes+1], '/'), 0)]
			e.Detail = "somewhere inside, at a path too long to repeat, a member " + e.Detail
		}
		p.Errors[i] = e
	}
	return p
}

// errStaleCache marks a write that committed but whose cache entry could
// not be invalidated (a shared cache that is away): 503, so the client
// sends it again, which invalidates again, rather than a 500 that reads
// as "not done".
var errStaleCache = errors.New("cache invalidation failed")

// invalidate drops key from the cache-aside c after a write, wrapping a
// failure in errStaleCache.
func invalidate(ctx context.Context, c *cache.Aside, key string) error {
	if err := c.Invalidate(ctx, key); err != nil {
		return fmt.Errorf("%w: %w", errStaleCache, err)
	}
	return nil
}

// toProblem maps every error a handler can return onto one problem: this
// table is the only place domain errors meet HTTP statuses.
func toProblem(err error) (p *Problem, internal bool) {
	var he *echo.HTTPError
	switch {
	case errors.As(err, &p):
		return p, false
	case errors.Is(err, store.ErrNotFound):
		return problem(http.StatusNotFound, "not-found", "no such resource"), false
	case errors.Is(err, store.ErrConflict):
		return problem(http.StatusConflict, "conflict", "that handle is taken"), false
	case errors.Is(err, store.ErrIdempotencyMismatch):
		return errKeyMismatch, false
	case errors.Is(err, store.ErrVersionMismatch):
		return problem(http.StatusPreconditionFailed, "precondition-failed", "the resource changed since the version in If-Match"), false
	case errors.Is(err, store.ErrBusy):
		p = problem(http.StatusServiceUnavailable, "busy", "the database is busy; retry shortly")
		p.retryAfter = time.Second
		return p, false
	case errors.Is(err, store.ErrFull), errors.Is(err, syscall.ENOSPC):
		// Not the client's fault, and not a bug: the disk filled up (the
		// media files or the database), and writes work again once space
		// is freed. Readiness fails meanwhile (ops.DiskCheck).
		return problem(http.StatusInsufficientStorage, "insufficient-storage", "the server is out of disk space; retry later"), false
	case errors.Is(err, errStaleCache):
		p = problem(http.StatusServiceUnavailable, "cache-unavailable",
			"the change is saved, but the cache could not be told; send the request again shortly")
		p.retryAfter = time.Second
		return p, false
	case errors.Is(err, context.DeadlineExceeded):
		p = problem(http.StatusServiceUnavailable, "timeout", "the request took too long; retry shortly")
		p.retryAfter = time.Second
		return p, false
	case errors.As(err, &he):
		return echoProblem(he), false
	}
	return problem(http.StatusInternalServerError, "internal", "something went wrong on our side; the request id identifies it in our logs"), true
}

// echoProblem covers what echo itself rejects: unknown routes, methods,
// and the body-limit middleware.
func echoProblem(he *echo.HTTPError) *Problem {
	switch he.Code {
	case http.StatusNotFound:
		return problem(he.Code, "not-found", "no such resource")
	case http.StatusMethodNotAllowed:
		return problem(he.Code, "method-not-allowed", "this resource does not support that method")
	case http.StatusRequestEntityTooLarge:
		return problem(he.Code, "too-large", "the request body is too large")
	case http.StatusUnsupportedMediaType:
		return problem(he.Code, "unsupported-media-type", "unsupported content type")
	}
	if he.Code >= 400 && he.Code < 500 {
		return problem(he.Code, "bad-request", http.StatusText(he.Code))
	}
	return problem(http.StatusInternalServerError, "internal", "something went wrong on our side; the request id identifies it in our logs")
}

// errorHandler is echo's HTTPErrorHandler: every error leaves as
// application/problem+json, and 5xx are logged with their cause.
func (a *App) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	p, internal := toProblem(err)
	cp := *p // the shared Problem values must not carry one request's id
	cp.RequestID = c.Response().Header().Get(echo.HeaderXRequestID)
	if internal || cp.Status >= 500 {
		ctx := c.Request().Context()
		attrs := []slog.Attr{
			slog.String("request_id", cp.RequestID), slog.String("method", c.Request().Method),
			slog.String("route", routeLabel(c.Path())), slog.Int("status", cp.Status), slog.String("err", err.Error()),
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
		}
		a.log.LogAttrs(ctx, slog.LevelError, "request failed", attrs...)
	}
	if cp.Status == http.StatusUnauthorized {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="onebox"`)
	}
	if cp.retryAfter > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int((cp.retryAfter+time.Second-1)/time.Second)))
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	// HEAD too: net/http sends the headers (type and length) and drops
	// the body, so HEAD's answer has GET's headers.
	_ = c.Blob(cp.Status, "application/problem+json", mustJSON(cp))
}
