package ops

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/maypok86/otter/v2"

	"onebox/ratelimit"
	"onebox/ratelimit/memory"
)

// Guard lets a request through to a handler with the operator token
// (Authorization: Bearer, or ?token= for a browser's first visit). With
// no token configured it lets in only requests that reached a loopback
// address and name a loopback host: what the admin listener serves (the
// dashboard, drills, the job queue, metrics) must not be open to a
// network by a change of ONEBOX_ADMIN_ADDR alone, nor to a web page
// that rebinds its own name to 127.0.0.1. A state-changing request that
// a browser sends from another origin is refused either way.
//
// Requests without the right token are limited per client address
// (GuardOptions.Failures): once a failure is refused, the address gets
// 429 with Retry-After whatever it sends, the right token included,
// until a failure would be allowed again, so a right guess cannot be told
// from a wrong one. The right token from other addresses is never
// limited. One Guard should cover every route of a listener, so that
// they share the budget.
type Guard struct {
	token  string
	sum    [sha256.Size]byte
	policy ratelimit.Policy
	now    func() time.Time
	fails  *memory.Limiter
	// locked holds, per client whose failure was refused, when a failure
	// may be tried again. Bounded, like the limiter's buckets.
	locked *otter.Cache[string, time.Time]
}

// GuardOptions configure a Guard. The zero value is a Guard with no
// token: loopback only.
type GuardOptions struct {
	Token string
	// Failures is the budget of requests without the right token per
	// client address (default 10 a minute, named "ops-auth").
	Failures ratelimit.Policy
	Now      func() time.Time // default time.Now
}

// NewGuard returns a Guard. It panics if o.Failures is set and invalid.
func NewGuard(o GuardOptions) *Guard {
	if o.Failures == (ratelimit.Policy{}) {
		o.Failures = ratelimit.Policy{Name: "ops-auth", Limit: 10, Window: time.Minute}
	}
	if err := o.Failures.Validate(); err != nil {
		panic("ops: " + err.Error())
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Guard{
		token: o.Token, sum: sha256.Sum256([]byte(o.Token)), policy: o.Failures, now: o.Now,
		fails: memory.New(memory.Options{MaxKeys: 10_000, Now: o.Now}),
		locked: otter.Must(&otter.Options[string, time.Time]{
			MaximumSize: 10_000,
			// The guard's clock decides; expiry only frees the memory.
			ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, time.Time]) time.Duration {
				return time.Until(e.Value) + time.Second
			}),
		}),
	}
}

// Wrap returns h behind the guard.
func (g *Guard) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if crossSite(r) {
			WriteProblem(w, http.StatusForbidden, "cross-origin", "a state-changing operator request must come from the same origin")
			return
		}
		if g.token == "" {
			if !arrivedOnLoopback(r) || !loopbackHost(r.Host) {
				WriteProblem(w, http.StatusForbidden, "ops-token",
					"without ONEBOX_OPS_TOKEN the admin listener answers only on a loopback address, named as localhost or a loopback IP: set the token and pass it as Authorization: Bearer")
				return
			}
			h.ServeHTTP(w, r)
			return
		}
		client := clientOf(r)
		now := g.now()
		if until, ok := g.locked.GetIfPresent(client); ok && now.Before(until) {
			g.tooMany(w, until.Sub(now))
			return
		}
		if hasToken(r, g.sum) {
			h.ServeHTTP(w, r)
			return
		}
		// The in-process limiter fails only for an invalid policy, which
		// NewGuard refused.
		if res, err := g.fails.Allow(r.Context(), g.policy, client); err == nil && !res.Allowed {
			g.locked.Set(client, now.Add(res.RetryAfter))
			g.tooMany(w, res.RetryAfter)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="onebox ops"`)
		WriteProblem(w, http.StatusUnauthorized, "ops-token", "pass the operator token (ONEBOX_OPS_TOKEN) as Authorization: Bearer or ?token=")
	})
}

func (g *Guard) tooMany(w http.ResponseWriter, wait time.Duration) {
	secs := ratelimit.RetryAfterSeconds(ratelimit.Result{RetryAfter: wait})
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	WriteProblem(w, http.StatusTooManyRequests, "ops-token",
		fmt.Sprintf("too many requests without the operator token from this address; retry in %d s", secs))
}

// clientOf is the budget key of the request's peer: IPv4 as is, IPv6 by
// its /64, since one subscriber usually holds a whole /64. The admin
// listener is not behind the public proxies: forwarded headers are not
// read.
func clientOf(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	addr := ap.Addr().Unmap()
	if addr.Is4() {
		return addr.String()
	}
	p, _ := addr.Prefix(64)
	return p.String()
}

// hasToken compares digests, so the comparison takes the same time
// whatever the length of the token sent.
func hasToken(r *http.Request, want [sha256.Size]byte) bool {
	got := r.URL.Query().Get("token")
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, t, _ := strings.Cut(auth, " ")
		if strings.EqualFold(scheme, "Bearer") {
			got = strings.TrimSpace(t)
		}
	}
	sum := sha256.Sum256([]byte(got))
	return got != "" && subtle.ConstantTimeCompare(sum[:], want[:]) == 1
}

// crossSite reports a browser's state-changing request from a page of
// another origin: curl and Prometheus send no Origin, the dashboard's own
// page sends its own.
func crossSite(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return r.Header.Get("Sec-Fetch-Site") == "cross-site"
	}
	u, err := url.Parse(origin)
	return err != nil || u.Host != r.Host
}

// loopbackHost reports whether a Host header names this machine's
// loopback: localhost or a loopback IP, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// arrivedOnLoopback reports whether the connection's local address, the
// listener's side, is loopback: only this host can reach it.
func arrivedOnLoopback(r *http.Request) bool {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	ap, err := netip.ParseAddrPort(addr.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// WriteProblem answers status with an RFC 9457 problem of type
// /problems/<kind>, for the operator's endpoints.
func WriteProblem(w http.ResponseWriter, status int, kind, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "/problems/" + kind, "title": http.StatusText(status), "status": status, "detail": detail,
	})
}
