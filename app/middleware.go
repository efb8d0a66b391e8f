package app

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"onebox/correlation"
	"onebox/internal/lazyctx"
	"onebox/ops/errlog"
	"onebox/ops/metrics"
	"onebox/ops/tracing"
	"onebox/ratelimit"
)

// observe is the outermost middleware: it gives the request an id, turns
// panics into a logged 500, writes every error as a problem, sets the
// security headers, counts the request in the metrics, wraps it in a
// trace span and writes the access log line. One middleware, not seven,
// because it runs on every request and each layer costs. With metrics
// and tracing off it reads no route and allocates nothing for them.
func (a *App) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		start := time.Now()
		req := c.Request()
		h := c.Response().Header()
		id := req.Header.Get(echo.HeaderXRequestID)
		if !validRequestID(id) {
			id = newRequestID()
		}
		h[headerRequestID] = []string{id}
		h[headerNoSniff], h[headerCSP] = noSniff, apiCSP

		var rt *route
		onBehalfOf := ""
		if a.metrics != nil || a.tracer != nil {
			// echo routed the request before this middleware: c.Path()
			// is the template.
			rt = a.route(req.Method, c.Path())
			onBehalfOf = rt.spanName // the SQLite writer names the route that holds it
		}
		ctx := correlation.WithRequest(req.Context(), id, onBehalfOf)
		var span trace.Span
		if rt != nil {
			a.metrics.InFlight(1)
			defer a.metrics.InFlight(-1) // even when the handler aborts
			if a.tracer != nil && !rt.stream {
				// Most requests carry no trace context; HeaderCarrier would
				// canonicalise "traceparent" on every one to find that out.
				if _, ok := req.Header[headerTraceParent]; ok {
					ctx = traceContext.Extract(ctx, propagation.HeaderCarrier(req.Header))
				}
				ctx, span = a.tracer.Start(ctx, rt.spanName, serverSpan...)
			}
		}
		c.SetRequest(req.WithContext(ctx))

		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r) // net/http's way to abort a response; let it
				}
				a.log.LogAttrs(c.Request().Context(), slog.LevelError, "panic",
					slog.String("request_id", id), slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
				err = fmt.Errorf("panic: %v", r)
			}
			failure := err
			if err != nil {
				a.errorHandler(err, c)
				err = nil
			}
			end := time.Now()
			d := end.Sub(start)
			if status := c.Response().Status; status >= 500 && a.errors != nil {
				a.recordError(c, id, end, status, failure)
			}
			if rt != nil {
				status := c.Response().Status
				rt.metrics.Observe(status, d)
				if span != nil {
					// The SDK copies the attributes: lend it a slice, which
					// passed to the interface method would be allocated.
					attrs := a.spanAttrs.Get().(*[4]attribute.KeyValue)
					*attrs = [4]attribute.KeyValue{rt.method, rt.template, attribute.Int("http.response.status_code", status), attribute.String(tracing.AttrRequestID, id)}
					span.SetAttributes(attrs[:]...)
					*attrs = [4]attribute.KeyValue{} // keep no request's strings alive
					a.spanAttrs.Put(attrs)
					if status >= 500 {
						span.SetStatus(codes.Error, http.StatusText(status))
					}
					span.End()
				}
			}
			if a.opts.AccessLog {
				a.accessLog(c, id, end, d, span)
			}
		}()
		return next(c)
	}
}

// recordError keeps a 5xx answer for the dashboard's recent errors.
func (a *App) recordError(c echo.Context, id string, at time.Time, status int, err error) {
	msg := http.StatusText(status)
	if err != nil {
		msg = err.Error()
	}
	path := c.Path() // the template; a client's path only when none matched
	if path == "" {
		path = c.Request().URL.Path
	}
	// Bounded, whatever the client sent: the log keeps a fixed number.
	a.errors.Add(errlog.Entry{Time: at, Route: clip(c.Request().Method+" "+path, 200), Status: status, Message: clip(msg, 500), RequestID: id})
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// The security headers go on every response: what a JSON or image response
// needs (no sniffing, nothing runs, no framing). The page adds its own
// (pageHeaders). The keys are already canonical and the value slices
// are shared read-only (net/http never writes to them), so setting them
// costs no canonicalisation or allocation on the request path; a handler
// that needs another value (the page's CSP) replaces the slice with
// Header().Set. Kept short on purpose: a profile read then sends eight
// header fields, and a ninth made net/http's header map grow and its copy
// of it large, a quarter of the request's allocated bytes. X-Frame-Options
// adds nothing to frame-ancestors in any browser that runs the page, and
// a JSON document has no links to send a Referer from.
var (
	noSniff = []string{"nosniff"}
	apiCSP  = []string{"default-src 'none'; frame-ancestors 'none'"}
)

// Header names in canonical form, for setting by map index on the hot
// path: Header.Set canonicalises on every call.
const (
	headerRequestID       = "X-Request-Id"
	headerRateLimitPolicy = "Ratelimit-Policy"
	headerRateLimit       = "Ratelimit"
	headerETag            = "Etag"
	headerNoSniff         = "X-Content-Type-Options"
	headerCSP             = "Content-Security-Policy"
	headerTraceParent     = "Traceparent"
)

// jsonContentType is shared by every JSON response (see noSniff).
var jsonContentType = []string{echo.MIMEApplicationJSON}

// jsonBlob answers status with the JSON document body.
func jsonBlob(c echo.Context, status int, body []byte) error {
	c.Response().Header()[echo.HeaderContentType] = jsonContentType
	return c.Blob(status, echo.MIMEApplicationJSON, body)
}

// traceContext reads a caller's W3C traceparent, so a request traced by
// a proxy or another service continues its trace.
var traceContext = propagation.TraceContext{}

// accessLog writes the request's line. It builds the record itself and
// hands it to the handler: Logger.LogAttrs would also walk the stack for
// a source position the line never shows. The duration is an integer
// (µs): slog encodes a float through encoding/json, a tenth of the line's
// cost.
func (a *App) accessLog(c echo.Context, id string, end time.Time, d time.Duration, span trace.Span) {
	ctx := c.Request().Context()
	h := a.log.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	res := c.Response()
	attrs := [9]slog.Attr{
		slog.String("request_id", id),
		slog.String("method", c.Request().Method),
		slog.String("route", routeLabel(c.Path())),
		slog.Int("status", res.Status),
		slog.Int64("duration_us", d.Microseconds()),
		slog.Int64("bytes", res.Size),
		slog.String("ip", c.RealIP()),
	}
	n := 7
	if who, ok := c.Get(identityKey).(identity); ok {
		attrs[n] = slog.String("user_id", who.userID)
		n++
	}
	if span != nil {
		attrs[n] = slog.String("trace_id", span.SpanContext().TraceID().String())
		n++
	}
	// One AddAttrs: the record keeps five attributes inline and grows
	// its slice for the rest, once instead of per call.
	r := slog.NewRecord(end, slog.LevelInfo, "request", 0)
	r.AddAttrs(attrs[:n]...)
	_ = h.Handle(ctx, r) // a failed write of a log line has nowhere to go
}

// routeLabel is the route template of a request, or "unmatched": what
// the access log, the metrics and the spans call it.
func routeLabel(template string) string {
	if template == "" {
		return metrics.Unmatched
	}
	return template
}

// validRequestID accepts an incoming X-Request-ID only if it is short and
// plain, so a client cannot inject log lines or huge values.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			return false
		}
	}
	return true
}

// newRequestID returns 96 random bits in hex. A request id must be
// unique, not secret: math/rand/v2's per-thread ChaCha8, seeded from the
// OS, gives that at a fraction of crypto/rand's cost (its DRBG and a
// getrandom call were 0.55% of a cached read's CPU).
func newRequestID() string {
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint32(b[8:], rand.Uint32())
	return hex.EncodeToString(b[:])
}

// timeout bounds ordinary API requests. Streams and uploads are not in
// the group it guards and set their own deadlines.
func (a *App) timeout(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := lazyctx.Timeout(c.Request().Context(), a.opts.RequestTimeout)
		defer ctx.Cancel()
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

// guard identifies the caller, applies the rate-limit policy and checks
// the Origin of cookie-authenticated writes. The limiter runs before a bad
// credential is refused, so guessing tokens costs budget too. byIP keys
// the bucket by client address even for a logged-in caller (sign-up and
// login).
func (a *App) guard(p ratelimit.Policy, byIP bool) echo.MiddlewareFunc {
	l := newLimit(p)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			who, authErr := a.identify(c)
			key := "u:" + who.userID
			if byIP || who.userID == "" {
				key = "ip:" + clientKey(c.RealIP())
			}
			if byIP {
				// Login may take from a second bucket and keeps the
				// headers of whichever is closer to running out.
				if err := a.allowFirst(c, l, key); err != nil {
					return err
				}
			} else if err := a.allow(c, l, key); err != nil {
				return err
			}
			if authErr != nil {
				return authErr
			}
			if who.userID != "" {
				c.Set(identityKey, who)
				if who.viaCookie && !safeMethod(c.Request().Method) && !a.sameOrigin(c) {
					return problem(http.StatusForbidden, "bad-origin", "a request authenticated by cookie must come from this site (Origin header)")
				}
			}
			return next(c)
		}
	}
}

// limit is a policy with its RateLimit-Policy value, made once per route
// so a request only shares the slice (net/http never writes to it).
type limit struct {
	policy ratelimit.Policy
	header []string
}

func newLimit(p ratelimit.Policy) limit {
	return limit{policy: p, header: []string{ratelimit.PolicyHeader(p)}}
}

// allow takes a token from (l's policy, key), sets the RateLimit headers
// and returns a 429 problem when the bucket is empty. A failing limiter
// backend lets the request through: availability beats strictness here,
// and the failure is logged and counted (result "error" in
// onebox_ratelimit_requests_total, which the dashboard flags).
func (a *App) allow(c echo.Context, l limit, key string) error {
	res, ok := a.take(c, l, key)
	if !ok {
		return nil
	}
	setRateHeaders(c, l, res)
	return refused(l.policy, res)
}

// rateKey holds, on a request that more than one policy limits (login),
// the result whose RateLimit headers the response carries.
const rateKey = "onebox.ratelimit"

type rateState struct {
	l   limit
	res ratelimit.Result
}

// allowFirst is allow for the first of several policies on a request:
// it remembers the result for allowAlso.
func (a *App) allowFirst(c echo.Context, l limit, key string) error {
	res, ok := a.take(c, l, key)
	if !ok {
		return nil
	}
	setRateHeaders(c, l, res)
	c.Set(rateKey, rateState{l, res})
	return refused(l.policy, res)
}

// allowAlso is allow for a later policy on the same request: the
// response keeps the RateLimit headers of the policy closest to running
// out, which is what a client pacing itself needs to know.
func (a *App) allowAlso(c echo.Context, l limit, key string) error {
	res, ok := a.take(c, l, key)
	if !ok {
		return nil
	}
	if prev, had := c.Get(rateKey).(rateState); !had || closerToEmpty(res, prev.res) {
		setRateHeaders(c, l, res)
		c.Set(rateKey, rateState{l, res})
	}
	return refused(l.policy, res)
}

// closerToEmpty reports whether x is nearer to refusing than y: refused
// before allowed, then fewer requests left, then a longer wait.
func closerToEmpty(x, y ratelimit.Result) bool {
	switch {
	case x.Allowed != y.Allowed:
		return !x.Allowed
	case !x.Allowed:
		return x.RetryAfter > y.RetryAfter
	case x.Remaining != y.Remaining:
		return x.Remaining < y.Remaining
	}
	return x.Reset > y.Reset
}

// take asks the limiter; ok is false when the backend failed, which lets
// the request through (logged).
func (a *App) take(c echo.Context, l limit, key string) (res ratelimit.Result, ok bool) {
	p := l.policy
	res, err := a.limiter.Allow(c.Request().Context(), p, key)
	if err != nil {
		a.log.LogAttrs(c.Request().Context(), slog.LevelWarn, "rate limiter failed; allowing",
			slog.String("policy", p.Name), slog.String("err", err.Error()))
		a.metrics.RateLimitFailed(p.Name)
		return res, false
	}
	a.metrics.RateLimit(p.Name, key, res.Allowed)
	return res, true
}

func setRateHeaders(c echo.Context, l limit, res ratelimit.Result) {
	h := c.Response().Header()
	h[headerRateLimitPolicy] = l.header
	h[headerRateLimit] = []string{ratelimit.StateHeader(l.policy, res)}
}

// refused is the 429 problem for a refused result, else nil.
func refused(p ratelimit.Policy, res ratelimit.Result) error {
	if res.Allowed {
		return nil
	}
	pr := problem(http.StatusTooManyRequests, "rate-limited",
		fmt.Sprintf("too many requests (%s policy); retry in %d s", p.Name, ratelimit.RetryAfterSeconds(res)))
	pr.retryAfter = time.Duration(ratelimit.RetryAfterSeconds(res)) * time.Second
	return pr
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameOrigin reports whether the request's Origin is this site's: exactly
// ONEBOX_PUBLIC_URL's origin when it is set, else the request's own
// scheme (believed from a trusted proxy only) and Host. A missing Origin
// fails, whatever Sec-Fetch-Site or Referer say: browsers send Origin on
// every cross-site write and on same-origin fetches that are not
// GET/HEAD, and other clients use bearer tokens.
func (a *App) sameOrigin(c echo.Context) bool {
	origin := c.Request().Header.Get(echo.HeaderOrigin)
	if origin == "" {
		return false
	}
	if a.opts.PublicOrigin != "" {
		return origin == a.opts.PublicOrigin
	}
	return origin == c.Scheme()+"://"+c.Request().Host
}

// clientKey is the rate-limit key of an address: IPv4 as is, IPv6 by its
// /64, since one subscriber usually holds a whole /64.
func clientKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap()
	if addr.Is4() {
		var b [len("255.255.255.255")]byte
		if string(addr.AppendTo(b[:0])) == ip {
			return ip // already in its usual form: no new string
		}
		return addr.String()
	}
	p, _ := addr.Prefix(64)
	return p.String()
}

// ipExtractor trusts X-Forwarded-For only from the configured proxies.
// Without proxies it uses the peer address: echo's default would believe
// X-Forwarded-For from anyone, and the limiter would be bypassable.
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	return echo.ExtractIPFromXFFHeader(trustOnly(trusted)...)
}

// schemeExtractor believes X-Forwarded-Proto (and its kin) only from the
// configured proxies, as ipExtractor does X-Forwarded-For. echo's
// default believes it from any loopback or private-network peer, and the
// scheme decides the session cookie's Secure flag and the Origin check.
func schemeExtractor(trusted []netip.Prefix) echo.SchemeExtractor {
	if len(trusted) == 0 {
		return echo.ExtractSchemeDirect()
	}
	return echo.ExtractSchemeFromHeaders(trustOnly(trusted)...)
}

// trustOnly are echo's trust options for exactly the trusted prefixes:
// none of its default loopback, link-local and private ranges.
func trustOnly(trusted []netip.Prefix) []echo.TrustOption {
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		_, n, err := net.ParseCIDR(p.String())
		if err == nil {
			opts = append(opts, echo.TrustIPRange(n))
		}
	}
	return opts
}
