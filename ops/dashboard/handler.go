package dashboard

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"io/fs"
	"net/http"

	"onebox/ops"
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
	mux.Handle("GET /ops/api/advise", d.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Advise())
	})))
	mux.Handle("GET /ops/api/diagnose", d.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Diagnose())
	})))
	d.deadRoutes(mux)
	if d.o.Drill != nil {
		mux.Handle("/ops/drill/", d.guard(d.o.Drill))
	} else {
		mux.HandleFunc("/ops/drill/", func(w http.ResponseWriter, r *http.Request) {
			ops.WriteProblem(w, http.StatusNotFound, "drills-off", "drills are off: they run only with ONEBOX_DRILLS=true")
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

// guard lets in a request with the operator token or, without one, on a
// loopback listener (ops.Guard).
func (d *Dashboard) guard(h http.Handler) http.Handler { return d.o.Guard.Wrap(h) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
