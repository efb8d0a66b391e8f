package ops

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// Guard lets a request through to h with the operator token
// (Authorization: Bearer, or ?token= for a browser's first visit). With
// no token configured it lets in only requests that reached a loopback
// address and name a loopback host: what the admin listener serves (the
// dashboard, drills, the job queue, metrics) must not be open to a
// network by a change of ONEBOX_ADMIN_ADDR alone, nor to a web page
// that rebinds its own name to 127.0.0.1. A state-changing request that
// a browser sends from another origin is refused either way.
func Guard(token string, h http.Handler) http.Handler {
	sum := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if crossSite(r) {
			WriteProblem(w, http.StatusForbidden, "cross-origin", "a state-changing operator request must come from the same origin")
			return
		}
		if token == "" {
			if !arrivedOnLoopback(r) || !loopbackHost(r.Host) {
				WriteProblem(w, http.StatusForbidden, "ops-token",
					"without ONEBOX_OPS_TOKEN the admin listener answers only on a loopback address, named as localhost or a loopback IP: set the token and pass it as Authorization: Bearer")
				return
			}
		} else if !hasToken(r, sum) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="onebox ops"`)
			WriteProblem(w, http.StatusUnauthorized, "ops-token", "pass the operator token (ONEBOX_OPS_TOKEN) as Authorization: Bearer or ?token=")
			return
		}
		h.ServeHTTP(w, r)
	})
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
