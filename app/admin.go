package app

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"onebox/jobs"
)

// AdminHandler serves the operator listener: health, the job queue as
// JSON (the same as `onebox jobs ...`) and the metrics. All but health,
// which load balancers poll, need the operator token (ops.Guard), and
// requests without it are limited per client address.
func (a *App) AdminHandler() http.Handler {
	guard := func(h http.HandlerFunc) http.Handler { return a.opsGuard.Wrap(h) }
	mux := http.NewServeMux()
	mux.Handle("GET /health/", a.echo)
	mux.Handle("GET /jobs/stats", guard(a.jobStats))
	mux.Handle("GET /jobs/dead", guard(a.deadJobs))
	mux.Handle("POST /jobs/retry", guard(a.retryJobs))
	mux.Handle("GET /metrics", guard(a.metrics.ServeHTTP)) // Prometheus text; 404 when metrics are off
	if a.ops != nil {
		mux.Handle("/ops/", a.ops) // the dashboard and drills, behind the same guard
		// An operator who opens the admin address finds the dashboard.
		mux.Handle("GET /{$}", http.RedirectHandler("/ops/", http.StatusFound))
	}
	return a.boundBodies(mux)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func adminError(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem(status, "admin", detail))
}

func (a *App) jobStats(w http.ResponseWriter, r *http.Request) {
	st, err := a.queue.Stats(r.Context())
	if err != nil {
		adminError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *App) deadJobs(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			adminError(w, http.StatusBadRequest, "limit must be 1 to 1000")
			return
		}
		limit = n
	}
	f, ok := deadFilter(w, r, jobs.ParseDeadFilter)
	if !ok {
		return
	}
	dead, err := a.queue.Dead(r.Context(), f, limit)
	if err != nil {
		adminError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": dead})
}

// deadFilter reads the dead jobs a request picks: id=A&id=B, kind=K,
// error=TEXT (in the last error), each optional, read by parse. It
// answers 400 itself when they are malformed.
func deadFilter(w http.ResponseWriter, r *http.Request, parse func(url.Values) (jobs.DeadFilter, error)) (jobs.DeadFilter, bool) {
	f, err := parse(r.URL.Query())
	if err != nil {
		adminError(w, http.StatusBadRequest, err.Error())
		return f, false
	}
	return f, true
}

// retryJobs: POST /jobs/retry?id=A&id=B, ?kind=K&error=TEXT (either or
// both), or ?all=true.
func (a *App) retryJobs(w http.ResponseWriter, r *http.Request) {
	f, ok := deadFilter(w, r, jobs.ParseRedrive)
	if !ok {
		return
	}
	n, err := a.queue.Redrive(r.Context(), f)
	if err != nil {
		adminError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if n > 0 {
		a.jobs.Notify()
	}
	writeJSON(w, http.StatusOK, map[string]int{"retried": n})
}
