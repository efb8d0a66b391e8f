package ops

import (
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Guard lets a request through to h with the operator token
// (Authorization: Bearer, or ?token= for a browser's first visit). With
// no token configured it lets in only requests that reached a loopback
// address: what the admin listener serves (the dashboard, drills, the
// job queue, metrics) must not be open to a network by a change of
// ONEBOX_ADMIN_ADDR alone.
func Guard(token string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token == "" {
			if !arrivedOnLoopback(r) {
				WriteProblem(w, http.StatusForbidden, "ops-token",
					"the admin listener is not on a loopback address: set ONEBOX_OPS_TOKEN and pass it as Authorization: Bearer")
				return
			}
		} else if !hasToken(r, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="onebox ops"`)
			WriteProblem(w, http.StatusUnauthorized, "ops-token", "pass the operator token (ONEBOX_OPS_TOKEN) as Authorization: Bearer or ?token=")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func hasToken(r *http.Request, token string) bool {
	got := r.URL.Query().Get("token")
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, t, _ := strings.Cut(auth, " ")
		if strings.EqualFold(scheme, "Bearer") {
			got = strings.TrimSpace(t)
		}
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
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
