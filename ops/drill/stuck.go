package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"onebox/jobs"
)

// KindStuck is the job of the stuck-job drill: its handler ignores its
// context and sleeps, as a handler blocked on a call without a deadline
// would, so operators can rehearse what the Runner does at the job's
// timeout (it abandons the handler: onebox_jobs_abandoned counts it, and
// readiness fails past ONEBOX_JOB_ABANDONED_MAX) while other jobs flow.
const KindStuck = "drill.stuck"

// StuckTimeout is KindStuck's job timeout (KindOptions.Timeout): short,
// so that a drill sees its jobs abandoned within seconds.
const StuckTimeout = time.Second

// maxStuck bounds the jobs one stuck-job drill sends.
const maxStuck = 100

// EnableStuckJobs turns the stuck-job drill on, sending its jobs to q,
// and returns the handler to register for KindStuck (with StuckTimeout
// and one attempt). The handler ignores its ctx on purpose, but never
// outlives the drill: it returns after its time, or when StopStuckJobs
// ends the drill, and at once if no drill runs when it starts.
func (dr *Drill) EnableStuckJobs(q jobs.Producer) jobs.Handler {
	dr.mu.Lock()
	dr.stuckQueue = q
	dr.mu.Unlock()
	return func(ctx context.Context, m jobs.Message) error {
		d, err := dr.jobFor(KindStuck, m)
		if err != nil {
			return err
		}
		dr.mu.Lock()
		release := dr.stuckRelease
		dr.mu.Unlock()
		if release == nil {
			return nil // the drill was stopped before this job started
		}
		dr.log.WarnContext(ctx, "drill: a job ignores its context", "for", d.String())
		t := time.NewTimer(d)
		defer t.Stop()
		select { // not ctx.Done(): that is the fault
		case <-t.C:
		case <-release:
		}
		return nil
	}
}

// StartStuckJobs sends n jobs that each ignore their context for d,
// which must be over 0 and within MaxDelay; n is 1 to 100.
func (dr *Drill) StartStuckJobs(ctx context.Context, d time.Duration, n int) error {
	if d <= 0 || d > dr.o.MaxDelay {
		return fmt.Errorf("for must be over 0 and at most %s", dr.o.MaxDelay)
	}
	if n < 1 || n > maxStuck {
		return fmt.Errorf("count must be 1 to %d", maxStuck)
	}
	dr.mu.Lock()
	q := dr.stuckQueue
	if q != nil && dr.stuckRelease == nil {
		dr.stuckRelease = make(chan struct{})
	}
	dr.mu.Unlock()
	if q == nil {
		return fmt.Errorf("the stuck-job drill needs this process's workers")
	}
	b, _ := json.Marshal(forPayload{For: d.String()})
	for range n {
		if err := q.Send(ctx, jobs.Message{Kind: KindStuck, Payload: b}, jobs.SendOptions{}); err != nil {
			return fmt.Errorf("%w: %w", errQueue, err)
		}
	}
	dr.log.Warn("drill started: stuck jobs", "count", n, "for", d.String(), "timeout", StuckTimeout.String())
	return nil
}

// StopStuckJobs ends the stuck-job drill: its handlers still running
// return, and its jobs not yet started do nothing. False if none ran. A
// nil Drill has none: main calls it when the process drains.
func (dr *Drill) StopStuckJobs() bool {
	if dr == nil {
		return false
	}
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.stuckRelease == nil {
		return false
	}
	close(dr.stuckRelease)
	dr.stuckRelease = nil
	dr.log.Warn("drill stopped: stuck jobs")
	return true
}

// serveStuckJobs is POST /ops/drill/stuck-job?for=30s&count=3 and
// DELETE /ops/drill/stuck-job.
func (dr *Drill) serveStuckJobs(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
	case http.MethodDelete:
		reply(w, http.StatusOK, map[string]any{"stopped": dr.StopStuckJobs()})
		return
	default:
		w.Header().Set("Allow", "POST, DELETE")
		reply(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST to start, DELETE to stop"})
		return
	}
	q := r.URL.Query()
	d, err := time.ParseDuration(q.Get("for"))
	if err != nil {
		reply(w, http.StatusBadRequest, map[string]string{"error": "for: want a duration such as 30s"})
		return
	}
	n := 1
	if v := q.Get("count"); v != "" {
		if n, err = strconv.Atoi(v); err != nil {
			reply(w, http.StatusBadRequest, map[string]string{"error": "count: want a number"})
			return
		}
	}
	if err := dr.StartStuckJobs(r.Context(), d, n); err != nil {
		replyStartErr(w, err)
		return
	}
	reply(w, http.StatusAccepted, map[string]any{"job": KindStuck, "count": n, "for": d.String(), "timeout": StuckTimeout.String()})
}
