package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

//go:embed assets
var assets embed.FS

var (
	page    = template.Must(template.ParseFS(assets, "assets/page.html"))
	static  = must(fs.Sub(assets, "assets/static"))
	version = assetVersion()
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// assetVersion is a hash of the static files, put in their URLs so a
// browser may cache them for good.
func assetVersion() string {
	h := sha256.New()
	_ = fs.WalkDir(static, ".", func(path string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			b, _ := fs.ReadFile(static, path)
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// csp allows nothing inline: the page's script and style are files of
// its own origin, so an injected string cannot run.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (d *Dashboard) routes() http.Handler {
	mux := http.NewServeMux()
	files := http.StripPrefix("/ops/static/", http.FileServerFS(static))
	mux.Handle("GET /ops/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("v") == version {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	}))
	mux.Handle("GET /ops/{$}", d.guard(http.HandlerFunc(d.page)))
	mux.Handle("GET /ops/api/state", d.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.State())
	})))
	mux.Handle("GET /ops/api/diagnose", d.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Diagnose())
	})))
	if d.o.Drill != nil {
		mux.Handle("/ops/drill/", d.guard(d.o.Drill))
	} else {
		mux.HandleFunc("/ops/drill/", func(w http.ResponseWriter, r *http.Request) {
			writeProblem(w, http.StatusNotFound, "drills-off", "drills are off: they run only with ONEBOX_DRILLS=true")
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer") // the token may be in the URL
		mux.ServeHTTP(w, r)
	})
}

func (d *Dashboard) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	data := struct {
		State
		Version string
	}{d.State(), version}
	if err := page.Execute(w, data); err != nil {
		d.log.Warn("dashboard: page", "err", err.Error())
	}
}

// guard lets a request in with the operator token (Authorization:
// Bearer, or ?token= for a browser's first visit); without a configured
// token, only requests that reached a loopback address.
func (d *Dashboard) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.o.Token == "" {
			if !arrivedOnLoopback(r) {
				writeProblem(w, http.StatusForbidden, "ops-token", "the admin listener is not on a loopback address: set ONEBOX_OPS_TOKEN to use /ops")
				return
			}
		} else if !hasToken(r, d.o.Token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="onebox ops"`)
			writeProblem(w, http.StatusUnauthorized, "ops-token", "pass the operator token (ONEBOX_OPS_TOKEN) as Authorization: Bearer or ?token=")
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeProblem answers with an RFC 9457 problem, like the rest of the
// service.
func writeProblem(w http.ResponseWriter, status int, kind, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "/problems/" + kind, "title": http.StatusText(status), "status": status, "detail": detail,
	})
}
