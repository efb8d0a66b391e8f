// Package app is onebox's HTTP API: routes, handlers and the middleware
// around them. It depends on the interfaces of the store, cache, rate
// limiter, queue, media storage and notification hub, never on a
// particular backend; on photos for the names it shares with the photo
// worker (job kinds, topics, media keys), never on the worker (pipeline)
// itself; and on imaging only for the upload's probe, which sniffs the
// type and reads the header's size before the body is stored.
package app

import (
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"onebox/auth"
	"onebox/cache"
	"onebox/jobs"
	"onebox/media"
	"onebox/notify"
	"onebox/ops"
	"onebox/ops/errlog"
	"onebox/ops/metrics"
	"onebox/ops/tracing"
	"onebox/photos"
	"onebox/ratelimit"
	"onebox/store"
)

// Deps are the backends the API runs on.
type Deps struct {
	Store   store.Store
	Cache   cache.Cache // nil turns caching off
	Limiter ratelimit.Limiter
	Hasher  *auth.Hasher
	Health  *ops.Health
	Media   media.Storage
	Hub     notify.Hub
	Queue   jobs.Inspector // for the operator endpoints
	Jobs    Notifier
	Now     func() time.Time // default time.Now
	Logger  *slog.Logger
	// Metrics and Tracing observe every request; nil turns each off, at
	// no cost on the request path.
	Metrics *metrics.Metrics
	Tracing *tracing.Tracing
	// Errors, if set, records every 5xx answer with its request id, for
	// the dashboard's recent errors.
	Errors *errlog.Log
	// Ops, if set, is served under /ops/ on the admin listener: the
	// operator dashboard and the drills (ops/dashboard guards them).
	Ops http.Handler
	// OpsGuard guards the admin listener's job queue and metrics; pass
	// the dashboard's, so the listener has one budget of failed
	// authentications. Default: one made from Options.OpsToken.
	OpsGuard *ops.Guard
}

// Notifier is told when a request enqueued work, so an in-process worker
// can start at once instead of at its next poll.
type Notifier interface{ Notify() }

// Policies are the rate-limit classes routes belong to.
type Policies struct {
	API        ratelimit.Policy // every API route, per user or client IP
	Auth       ratelimit.Policy // sign-up and login, per client IP
	AuthHandle ratelimit.Policy // login, per target handle
	AuthDevice ratelimit.Policy // login with a device token, per device, instead of AuthHandle
	Upload     ratelimit.Policy // uploads, per user
}

// Options tune the API.
type Options struct {
	CacheTTL         time.Duration
	CacheNegativeTTL time.Duration
	ProfileSMaxAge   time.Duration
	SessionTTL       time.Duration
	RequestTimeout   time.Duration
	MaxBodyBytes     int64
	MaxUploadBytes   int64
	MaxPixels        int64
	// DecodeMemory is the pipeline's decode budget: an upload whose image
	// would need more to process is refused (422). 0 does not check.
	DecodeMemory  int64
	UploadTimeout time.Duration
	// BodyTimeout bounds how long a client may take to send a request
	// body (uploads have UploadTimeout instead); 0 means 10 s.
	BodyTimeout time.Duration
	// SSEPerUser and SSEMax cap the open event streams of this instance,
	// per user (429 past it) and in total (503); 0 is no bound.
	SSEPerUser, SSEMax int
	// UploadBacklog is how many photos may wait for (or be in) the
	// pipeline before uploads are refused with 503; 0 is no bound.
	UploadBacklog int
	// MaxInFlight is how many requests are handled at once; past it a
	// request is shed with 503 and Retry-After. Health checks, event
	// streams and uploads are not counted. 0 is no bound.
	MaxInFlight int
	Policies    Policies
	// TrustedProxies are the peers whose X-Forwarded-For and
	// X-Forwarded-Proto are believed; from anyone else the connection's
	// own address and scheme count.
	TrustedProxies []netip.Prefix
	// PublicOrigin, when set ("https://photos.example.com", as
	// config.PublicOrigin returns it), is the only Origin a
	// cookie-authenticated write may carry; else the request's own scheme
	// and Host are.
	PublicOrigin string
	// MediaOrigin, when set ("https://cdn.example.com"), is where the
	// pages' images come from besides this service: the page's
	// Content-Security-Policy admits it.
	MediaOrigin string
	// DeviceKey signs device tokens (auth.Devices, at least 32 bytes, the
	// same on every instance); empty turns them off, and every login
	// counts against its handle's budget. DeviceTTL is their lifetime.
	DeviceKey []byte
	DeviceTTL time.Duration
	AccessLog bool
	// OpsToken guards the admin listener's job queue and metrics, as it
	// guards /ops: without it they answer only on a loopback listener.
	OpsToken string
	// IdempotencyTTL is how long an upload's Idempotency-Key is held:
	// until then a retry gets the first answer. Default 24h.
	IdempotencyTTL time.Duration
	// EventsFallbackPoll is how often an event stream reads the store
	// while the hub is down; with a working hub it reads only when woken.
	// Default 2s.
	EventsFallbackPoll time.Duration
}

// App is the HTTP API.
type App struct {
	store    store.Store
	limiter  ratelimit.Limiter
	hasher   *auth.Hasher
	health   *ops.Health
	media    media.Storage
	hub      notify.Hub
	queue    jobs.Inspector
	jobs     Notifier
	log      *slog.Logger
	now      func() time.Time
	opts     Options
	backlog  *backlog // bounds the photos waiting for the pipeline
	shedder  *shedder // bounds the requests handled at once
	unshed   map[routeKey]bool
	inflight *inflight    // the Idempotency-Keys of uploads in progress
	profiles *cache.Aside // public profiles by user id
	// loadFreshness is how fresh a public profile's load reads: with a
	// cache, MustBeFresh, since the value is then served for the cache's
	// TTL (by every instance, with a shared cache) and a load from a
	// lagging replica or snapshot after an invalidation would undo it;
	// without one, MayBeStale, as any read that is served as it is.
	loadFreshness store.Freshness
	sessions      *cache.Aside // sessions by token hash
	echo          *echo.Echo
	closing       chan struct{} // closed by Close: long streams end
	closed        sync.Once

	metrics  *metrics.Metrics
	tracing  *tracing.Tracing
	tracer   trace.Tracer // nil when tracing is off
	errors   *errlog.Log  // nil records no 5xx
	ops      http.Handler // nil leaves /ops out of AdminHandler
	opsGuard *ops.Guard
	seen     sync.Map // routeKey → *route, for observe
	// spanAttrs lends observe the attributes of a request's span.
	spanAttrs sync.Pool // *[4]attribute.KeyValue

	publicCacheControl []string      // shared, read-only
	authHandle         limit         // login attempts per handle, taken in the handler
	authDevice         limit         // login attempts per device token, instead of authHandle
	devices            *auth.Devices // nil: device tokens are off

	streams *streamCaps // bounds the open event streams
	// streamed are the routes that read their body as it streams, not
	// through the bodies middleware, with the time they allow for it.
	streamed map[routeKey]time.Duration
}

// New builds the API and its routes.
func New(d Deps, o Options) *App {
	if d.Now == nil {
		d.Now = time.Now
	}
	if o.IdempotencyTTL <= 0 {
		o.IdempotencyTTL = defaultIdempotencyTTL
	}
	if o.BodyTimeout == 0 {
		o.BodyTimeout = defaultBodyTimeout
	}
	a := &App{
		store: d.Store, limiter: d.Limiter, hasher: d.Hasher, health: d.Health,
		media: d.Media, hub: d.Hub, queue: d.Queue, jobs: d.Jobs, log: d.Logger, now: d.Now, opts: o,
		metrics: d.Metrics, tracing: d.Tracing, tracer: d.Tracing.Tracer(), errors: d.Errors,
		ops:                d.Ops,
		opsGuard:           d.OpsGuard,
		closing:            make(chan struct{}),
		publicCacheControl: []string{"public, no-cache, s-maxage=" + seconds(o.ProfileSMaxAge)},
		authHandle:         newLimit(o.Policies.AuthHandle),
		streams:            newStreamCaps(o.SSEPerUser, o.SSEMax),
		streamed:           map[routeKey]time.Duration{},
		shedder:            newShedder(o.MaxInFlight),
		unshed:             map[routeKey]bool{},
	}
	if a.opsGuard == nil {
		a.opsGuard = ops.NewGuard(ops.GuardOptions{Token: o.OpsToken, Now: d.Now})
	}
	if len(o.DeviceKey) > 0 {
		dev, err := auth.NewDevices(o.DeviceKey, o.DeviceTTL)
		if err != nil {
			panic("app: " + err.Error()) // configuration validates the key
		}
		a.devices, a.authDevice = dev, newLimit(o.Policies.AuthDevice)
	}
	a.loadFreshness = store.MayBeStale
	if d.Cache != nil {
		a.loadFreshness = store.MustBeFresh
	}
	a.spanAttrs.New = func() any { return new([4]attribute.KeyValue) }
	a.backlog = newBacklog(d.Queue, photos.KindProcess, o.UploadBacklog, d.Now)
	a.inflight = newInflight()
	// A load runs on the request that misses first, which waits for it:
	// it gets that request's time budget.
	a.profiles = cache.NewAside(d.Cache, a.observeCache("profiles", cache.AsideOptions{TTL: o.CacheTTL, Jitter: 0.1, NegativeTTL: o.CacheNegativeTTL, LoadTimeout: o.RequestTimeout}))
	a.sessions = cache.NewAside(d.Cache, a.observeCache("sessions", cache.AsideOptions{TTL: min(o.CacheTTL, time.Minute), Jitter: 0.1, NegativeTTL: o.CacheNegativeTTL, LoadTimeout: o.RequestTimeout}))

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = a.errorHandler
	e.IPExtractor = ipExtractor(o.TrustedProxies)
	e.SchemeExtractor = schemeExtractor(o.TrustedProxies)
	// Shedding comes after the body is read (within its own deadline),
	// so a slow sender cannot hold a slot while it trickles it in.
	//
	// echo applies the middleware given to Use to the matched handler
	// anew on every request (and a route's own middleware too), a closure
	// allocated per middleware per request. This chain is built once: its
	// end calls the handler echo matched, c.Handler(), which is what echo
	// passes as next to the only middleware given to Use. Routes take
	// their middleware already applied (chain).
	stack := a.observe(a.bodies(a.shed(callMatched)))
	e.Use(func(echo.HandlerFunc) echo.HandlerFunc { return stack })
	a.routes(e)
	a.echo = e
	return a
}

// Handler serves the API.
func (a *App) Handler() http.Handler { return a.echo }

// Route is one method and path template the API serves.
type Route struct{ Method, Path string }

// Routes lists the API's routes, so a test can cover every one, including
// those added after it was written.
func (a *App) Routes() []Route {
	var rs []Route
	for _, r := range a.echo.Routes() {
		rs = append(rs, Route{Method: r.Method, Path: r.Path})
	}
	return rs
}

// Close ends the long-lived event streams, so a graceful shutdown is not
// held up by them. Register it with http.Server.RegisterOnShutdown.
func (a *App) Close() { a.closed.Do(func() { close(a.closing) }) }

// getHead registers a GET route for HEAD too, as RFC 9110 asks: the same
// handler answers, and net/http sends its headers without the body.
var getHead = []string{http.MethodGet, http.MethodHead}

func (a *App) routes(e *echo.Echo) {
	p := a.opts.Policies
	// Routes that are never shed (see shed).
	unshed := func(rs ...*echo.Route) {
		for _, r := range rs {
			a.unshed[routeKey{r.Method, r.Path}] = true
		}
	}
	unshed(e.Match(getHead, "/health/live", a.live)...)
	unshed(e.Match(getHead, "/health/ready", a.ready)...)

	// The timeout goes on each route, not on the group: echo gives a group
	// with middleware catch-all routes that turn 405 into 404.
	v1 := e.Group("/v1")
	authLimited := []echo.MiddlewareFunc{a.timeout, a.guard(p.Auth, true)}
	limited := []echo.MiddlewareFunc{a.timeout, a.guard(p.API, false)}
	// Routes get their middleware applied once, here (see New).
	v1.POST("/users", chain(a.createUser, authLimited...))
	v1.POST("/sessions", chain(a.createSession, authLimited...))
	v1.DELETE("/sessions/current", chain(a.deleteSession, limited...))
	v1.Match(getHead, "/users", chain(a.listUsers, limited...))
	v1.Match(getHead, "/users/me", chain(a.getMe, limited...))
	v1.PATCH("/users/me", chain(a.patchMe, limited...))
	v1.DELETE("/users/me", chain(a.deleteMe, limited...))
	v1.PUT("/users/me/password", chain(a.changePassword, limited...))
	v1.Match(getHead, "/users/:id", chain(a.getUser, limited...))
	v1.Match(getHead, "/users/:id/photos", chain(a.listPhotos, limited...))
	v1.Match(getHead, "/photos/:id", chain(a.getPhoto, limited...))
	v1.DELETE("/photos/:id", chain(a.deletePhoto, limited...))
	// Uploads and streams set their own deadlines instead of the API's.
	up := v1.POST("/photos", chain(a.upload, a.guard(p.Upload, false)))
	a.streamed[routeKey{up.Method, up.Path}] = a.opts.UploadTimeout
	unshed(up)
	streams := a.guard(p.API, false)
	unshed(v1.Match(getHead, "/photos/:id/events", chain(a.photoEvents, streams))...)
	unshed(v1.Match(getHead, "/users/me/events", chain(a.userEvents, streams))...)
	e.Match(getHead, "/media/*", a.serveMedia)
	a.webRoutes(e)
}

// chain applies middleware to h as echo would, the first outermost, but
// once, at registration, instead of on every request.
func chain(h echo.HandlerFunc, middleware ...echo.MiddlewareFunc) echo.HandlerFunc {
	for i := len(middleware) - 1; i >= 0; i-- {
		h = middleware[i](h)
	}
	return h
}

// callMatched runs the handler echo's router matched for the request:
// a route's (with its middleware, see chain), or echo's 404 or 405.
func callMatched(c echo.Context) error { return c.Handler()(c) }

func seconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
