package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"onebox/jobs"
	"onebox/ops"
)

// DeadLetters is what the dead-letter list needs of the job queue;
// jobs.Inspector has it.
type DeadLetters interface {
	Stats(ctx context.Context) (jobs.Stats, error)
	Dead(ctx context.Context, f jobs.DeadFilter, limit int) ([]jobs.DeadMessage, error)
	Redrive(ctx context.Context, f jobs.DeadFilter) (int, error)
}

// DeadList is GET /ops/api/dead: the dead count of every kind with dead
// jobs, and the newest dead jobs the filter picks.
type DeadList struct {
	Kinds []DeadKind  `json:"kinds"`
	Items []DeadEntry `json:"items"`
	Limit int         `json:"limit"`
}

// DeadKind is one kind's dead count.
type DeadKind struct {
	Kind string `json:"kind"`
	Dead int    `json:"dead"`
}

// DeadEntry is one dead job as the page lists it.
type DeadEntry struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error"`
	DiedAt    time.Time `json:"died_at"`
	Payload   string    `json:"payload"` // a summary: compact, cut at payloadMax runes
	RequestID string    `json:"request_id,omitempty"`
}

const (
	payloadMax  = 120
	deadLimit   = 100  // listed by default
	maxDeadList = 1000 // the most one request lists
)

// summarize is payload compacted and cut at payloadMax runes, so a
// large payload neither floods the page nor hides the others.
func summarize(payload json.RawMessage) string {
	var b bytes.Buffer
	s := string(payload)
	if json.Compact(&b, payload) == nil {
		s = b.String()
	}
	if utf8.RuneCountInString(s) <= payloadMax {
		return s
	}
	return string([]rune(s)[:payloadMax-1]) + "…"
}

// deadFilter reads the dead jobs a request picks: id=A&id=B, kind=K,
// error=TEXT, each optional, read by parse. It answers 400 itself when
// they are malformed.
func deadFilter(w http.ResponseWriter, r *http.Request, parse func(url.Values) (jobs.DeadFilter, error)) (jobs.DeadFilter, bool) {
	f, err := parse(r.URL.Query())
	if err != nil {
		ops.WriteProblem(w, http.StatusBadRequest, "bad-filter", err.Error())
		return f, false
	}
	return f, true
}

func (d *Dashboard) deadList(w http.ResponseWriter, r *http.Request) {
	f, ok := deadFilter(w, r, jobs.ParseDeadFilter)
	if !ok {
		return
	}
	limit := deadLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDeadList {
			ops.WriteProblem(w, http.StatusBadRequest, "bad-limit", "limit must be 1 to 1000")
			return
		}
		limit = n
	}
	st, err := d.o.Dead.Stats(r.Context())
	if err != nil {
		ops.WriteProblem(w, http.StatusServiceUnavailable, "queue", "reading the queue: "+err.Error())
		return
	}
	dead, err := d.o.Dead.Dead(r.Context(), f, limit)
	if err != nil {
		ops.WriteProblem(w, http.StatusServiceUnavailable, "queue", "reading dead jobs: "+err.Error())
		return
	}
	out := DeadList{Kinds: []DeadKind{}, Items: make([]DeadEntry, 0, len(dead)), Limit: limit}
	for _, kind := range slices.Sorted(maps.Keys(st.Kinds)) {
		if n := st.Kinds[kind].Dead; n > 0 {
			out.Kinds = append(out.Kinds, DeadKind{Kind: kind, Dead: n})
		}
	}
	for _, m := range dead {
		out.Items = append(out.Items, DeadEntry{ID: m.ID, Kind: m.Kind, Attempts: m.Attempt, LastError: m.LastError,
			DiedAt: m.DiedAt, Payload: summarize(m.Payload), RequestID: m.RequestID})
	}
	writeJSON(w, http.StatusOK, out)
}

// deadRedrive is POST /ops/api/dead/redrive?id=…, ?kind=…&error=… (either
// or both), or ?all=true: the dead jobs picked go back in the queue.
func (d *Dashboard) deadRedrive(w http.ResponseWriter, r *http.Request) {
	f, ok := deadFilter(w, r, jobs.ParseRedrive)
	if !ok {
		return
	}
	n, err := d.o.Dead.Redrive(r.Context(), f)
	if err != nil {
		ops.WriteProblem(w, http.StatusServiceUnavailable, "queue", "redriving: "+err.Error())
		return
	}
	d.log.Info("dashboard: dead jobs redriven", "count", n, "ids", len(f.IDs), "kind", f.Kind, "error", f.Error)
	if n > 0 && d.o.OnRedrive != nil {
		d.o.OnRedrive()
	}
	writeJSON(w, http.StatusOK, map[string]int{"redriven": n})
}

// deadRoutes mounts the dead-letter list and its redrive, or says they
// are off when no queue is wired.
func (d *Dashboard) deadRoutes(mux *http.ServeMux) {
	if d.o.Dead == nil {
		off := func(w http.ResponseWriter, r *http.Request) {
			ops.WriteProblem(w, http.StatusNotFound, "no-queue", "no job queue is wired to the dashboard")
		}
		mux.Handle("GET /ops/api/dead", d.guard(http.HandlerFunc(off)))
		mux.Handle("POST /ops/api/dead/redrive", d.guard(http.HandlerFunc(off)))
		return
	}
	mux.Handle("GET /ops/api/dead", d.guard(http.HandlerFunc(d.deadList)))
	mux.Handle("POST /ops/api/dead/redrive", d.guard(http.HandlerFunc(d.deadRedrive)))
}
