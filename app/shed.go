package app

import (
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/labstack/echo/v4"
)

// shedRetryAfter is what a shed request is told to wait: an overload
// that lasts is the operator's to fix, a burst is over in a second.
const shedRetryAfter = time.Second

// shedder bounds the requests being handled at once. Past the bound a
// request is answered 503 at once, before it reads anything or takes a
// lock: under a load the machine cannot serve, the requests it admits
// keep their latency and the rest learn so in microseconds, instead of
// every request queueing for CPU, memory growing with them, and the
// latency of all growing with the run.
type shedder struct {
	slots chan struct{} // nil: no bound
	max   int
}

func newShedder(max int) *shedder {
	s := &shedder{max: max}
	if max > 0 {
		s.slots = make(chan struct{}, max)
	}
	return s
}

// shed is the middleware. It runs after echo has routed the request, so
// it knows the route: health checks (the load balancer must see a busy
// instance as alive), event streams (they last up to an hour and have
// their own caps) and uploads (they stream their bodies for minutes and
// have the upload backlog) are not counted.
func (a *App) shed(next echo.HandlerFunc) echo.HandlerFunc {
	if a.shedder.slots == nil {
		return next
	}
	return func(c echo.Context) error {
		if a.unshed[routeKey{c.Request().Method, c.Path()}] {
			return next(c)
		}
		select {
		case a.shedder.slots <- struct{}{}:
		default:
			a.metrics.Shed()
			p := problem(http.StatusServiceUnavailable, "overloaded",
				fmt.Sprintf("the server is handling %d requests, its bound (ONEBOX_MAX_IN_FLIGHT); retry shortly", a.shedder.max))
			p.retryAfter = shedRetryAfter
			return p
		}
		defer func() { <-a.shedder.slots }()
		return next(c)
	}
}

// Busy reports whether the API is serving requests now (those the
// shedder counts): at least one per two processors in flight, so one on
// two cores. Requests queued in the kernel are not counted, so a saturated
// API shows only a few in flight at any instant; a higher threshold
// missed most of a wrk run. Background work yields while it is true
// (jobs.RunnerOptions.Busy). Always false without ONEBOX_MAX_IN_FLIGHT,
// which is what counts them.
func (a *App) Busy() bool {
	return a.shedder.slots != nil && len(a.shedder.slots) >= max(1, runtime.GOMAXPROCS(0)/2)
}
