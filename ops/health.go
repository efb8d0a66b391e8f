// Package ops holds what an operator needs from the process itself:
// health and readiness, and the graceful-drain lifecycle that makes a
// deploy lose no request.
package ops

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Check is one dependency's readiness probe.
type Check struct {
	Name    string
	Timeout time.Duration // default 1s
	Probe   func(ctx context.Context) error
	// Advisory checks are reported but leave the instance ready: what
	// they watch degrades the service without stopping it (a read replica
	// out of rotation sends its reads to the primary).
	Advisory bool
}

// Health tracks readiness: every check must pass and the process must not
// be draining.
type Health struct {
	// Role, if set, is named in every Report: what this instance runs
	// (its checks are those of that role).
	Role     string
	checks   []Check
	draining atomic.Bool
}

// NewHealth returns a Health over checks.
func NewHealth(checks ...Check) *Health { return &Health{checks: checks} }

// Report is the JSON body of a readiness answer.
type Report struct {
	Status string            `json:"status"` // "ready", "unready" or "draining"
	Checks map[string]string `json:"checks"` // name → "ok" or the error
	Role   string            `json:"role,omitempty"`
}

// Drain marks the process as going away: readiness fails from now on.
func (h *Health) Drain() { h.draining.Store(true) }

// Draining reports whether Drain was called.
func (h *Health) Draining() bool { return h.draining.Load() }

// Ready runs the checks in parallel, each with its own short timeout.
func (h *Health) Ready(ctx context.Context) (bool, Report) {
	rep := Report{Status: "ready", Checks: make(map[string]string, len(h.checks)), Role: h.Role}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range h.checks {
		wg.Go(func() {
			timeout := c.Timeout
			if timeout <= 0 {
				timeout = time.Second
			}
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			res := "ok"
			if err := c.Probe(cctx); err != nil {
				res = err.Error()
			}
			mu.Lock()
			rep.Checks[c.Name] = res
			if res != "ok" && !c.Advisory {
				rep.Status = "unready"
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if h.Draining() {
		rep.Status = "draining"
	}
	return rep.Status == "ready", rep
}
