package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"onebox/jobs"
)

// KindHoldWriter is the job of the writer-hold drill: it holds SQLite's
// one writer for a set time, as a job with a long transaction would, so
// operators can rehearse reading who keeps the writes waiting (the
// dashboard's writer panel; `onebox ops diagnose` names the job kind).
const KindHoldWriter = "drill.hold_writer"

// HoldWriterOptions is what the writer-hold drill needs: a queue to send
// its job to, and the store's hold (sqlite.Store.HoldWriter).
type HoldWriterOptions struct {
	Queue jobs.Producer
	Hold  func(ctx context.Context, d time.Duration) error
}

// forPayload is a drill job's payload: how long it lasts.
type forPayload struct {
	For string `json:"for"`
}

// jobFor is how long the drill job m of kind asks for, within MaxDelay.
func (dr *Drill) jobFor(kind string, m jobs.Message) (time.Duration, error) {
	var p forPayload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return 0, fmt.Errorf("drill: %s payload: %w", kind, err)
	}
	d, err := time.ParseDuration(p.For)
	if err != nil || d <= 0 || d > dr.o.MaxDelay {
		return 0, fmt.Errorf("drill: %s: for %q: want a duration over 0 and at most %s", kind, p.For, dr.o.MaxDelay)
	}
	return d, nil
}

// EnableHoldWriter turns the writer-hold drill on, and returns the
// handler to register for KindHoldWriter (with a Timeout over MaxDelay).
// Only an SQLite store has a writer to hold.
func (dr *Drill) EnableHoldWriter(o HoldWriterOptions) jobs.Handler {
	dr.mu.Lock()
	dr.holdQueue = o.Queue
	dr.mu.Unlock()
	return func(ctx context.Context, m jobs.Message) error {
		d, err := dr.jobFor(KindHoldWriter, m)
		if err != nil {
			return err
		}
		dr.setHolding(d)
		defer dr.setHolding(0)
		dr.log.WarnContext(ctx, "drill: a job holds the database writer", "for", d.String())
		return o.Hold(ctx, d)
	}
}

func (dr *Drill) setHolding(d time.Duration) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	dr.holding, dr.holdUntil = d, dr.o.Now().Add(d)
}

// StartHoldWriter sends the job that holds the writer for d, which
// must be over 0 and within MaxDelay.
func (dr *Drill) StartHoldWriter(ctx context.Context, d time.Duration) error {
	if d <= 0 || d > dr.o.MaxDelay {
		return fmt.Errorf("for must be over 0 and at most %s", dr.o.MaxDelay)
	}
	dr.mu.Lock()
	q := dr.holdQueue
	dr.mu.Unlock()
	if q == nil {
		return fmt.Errorf("the writer-hold drill needs the SQLite store and this process's workers")
	}
	b, _ := json.Marshal(forPayload{For: d.String()})
	if err := q.Send(ctx, jobs.Message{Kind: KindHoldWriter, Payload: b}, jobs.SendOptions{}); err != nil {
		return fmt.Errorf("%w: %w", errQueue, err)
	}
	return nil
}

// serveHoldWriter is POST /ops/drill/writer-hold?for=5s.
func (dr *Drill) serveHoldWriter(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		reply(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST to start; the drill ends by itself"})
		return
	}
	d, err := time.ParseDuration(r.URL.Query().Get("for"))
	if err != nil {
		reply(w, http.StatusBadRequest, map[string]string{"error": "for: want a duration such as 5s"})
		return
	}
	if err := dr.StartHoldWriter(r.Context(), d); err != nil {
		replyStartErr(w, err)
		return
	}
	reply(w, http.StatusAccepted, map[string]any{"job": KindHoldWriter, "for": d.String()})
}
