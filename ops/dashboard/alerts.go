package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// AlertRules say when an alert fires. Zero fields take the defaults
// shown.
type AlertRules struct {
	// ErrorRate: the 5xx share of requests (over Recent) above which,
	// held for For, http_error_rate fires. 0.05.
	ErrorRate float64
	// P95: the request p95 (over Recent) above which, held for For,
	// http_p95 fires. 500ms. It is read exactly, not from buckets: the
	// p95 is above P95 exactly when more than 5 % of requests were
	// slower, which the metric onebox_http_requests_slow_total counts
	// (its threshold must be this one: metrics.Options.SlowRequest).
	P95 time.Duration
	// For is how long ErrorRate and P95 must hold, and how long the queue
	// depth must rise, before their alerts fire. 5m.
	For time.Duration
	// DiskFree: the free share below which disk_low fires. 0.10.
	DiskFree float64
	// MinRequests: fewer requests over Recent never fire
	// http_error_rate. 10.
	MinRequests float64
	// jobs_dead fires as soon as a job is dead-lettered; it has no knob.
}

func (r AlertRules) withDefaults() AlertRules {
	r.ErrorRate = orDefault(r.ErrorRate, 0.05)
	r.P95 = orDefault(r.P95, 500*time.Millisecond)
	r.For = orDefault(r.For, 5*time.Minute)
	r.DiskFree = orDefault(r.DiskFree, 0.10)
	r.MinRequests = orDefault(r.MinRequests, 10)
	return r
}

// Alert is one alert's transition, as logged, shown and sent to the
// webhook.
type Alert struct {
	Name    string    `json:"alert"`  // http_error_rate, http_p95, queue_growing, jobs_dead, disk_low, backup_verify_failed, backup_verify_stale
	Status  string    `json:"status"` // "firing" or "resolved"
	Summary string    `json:"summary"`
	Since   time.Time `json:"since"` // when it fired
	At      time.Time `json:"at"`    // of this transition
}

// rule is one alert's condition, checked at every sample: whether it
// holds, and a sentence with the current value either way (the
// resolved line says it), or "" when there is nothing to say.
type rule struct {
	name string
	hold bool // must stay true for AlertRules.For before firing
	cond func(h *history, o AlertRules) (bool, string)
}

// slowShare is the share of requests above the p95: 5 %.
const slowShare = 0.05

var rules = []rule{
	{"http_error_rate", true, func(h *history, o AlertRules) (bool, string) {
		r := h.current
		if r.requests <= 0 {
			return false, "no requests"
		}
		er := r.errors5xx / r.requests
		return er > o.ErrorRate && r.requests >= o.MinRequests,
			fmt.Sprintf("HTTP 5xx at %s of %s requests (alert above %s for %s)", pct(er), count(r.requests), pct(o.ErrorRate), dur(o.For))
	}},
	{"http_p95", true, func(h *history, o AlertRules) (bool, string) {
		r := h.current
		if r.timed <= 0 {
			return false, "no requests"
		}
		share := r.slow / r.timed
		return share > slowShare, fmt.Sprintf("%s of requests slower than %s, so p95 %s it (alert when over %s for %s); p95 %s",
			pct(share), secs(o.P95.Seconds()), map[bool]string{true: "is above", false: "is within"}[share > slowShare],
			pct(slowShare), dur(o.For), quantText(r.est["http.p95"]))
	}},
	{"queue_growing", false, func(h *history, o AlertRules) (bool, string) {
		up, first, last := h.growing("queue.depth", o.For, true)
		if !up {
			return false, "queue depth " + count(h.current.depth)
		}
		return up, fmt.Sprintf("queue depth rose from %s to %s over %s", count(first), count(last), dur(o.For))
	}},
	{"jobs_dead", false, func(h *history, o AlertRules) (bool, string) {
		n := h.current.deadLettered
		return n > 0, fmt.Sprintf("%s dead-lettered jobs: see onebox jobs dead", count(n))
	}},
	// The backup verification's, on the instance that runs it (see
	// judgeBackup): the last one failed, or none ended for twice the
	// interval.
	{"backup_verify_failed", false, func(h *history, o AlertRules) (bool, string) {
		r := h.current
		if math.IsNaN(r.backupOK) {
			return false, ""
		}
		return r.backupOK == 0, map[bool]string{true: "the last backup verification failed: see the log line \"backup verify failed\", or run onebox backup verify",
			false: "the last backup verification passed"}[r.backupOK == 0]
	}},
	{"backup_verify_stale", false, func(h *history, o AlertRules) (bool, string) {
		r := h.current
		if math.IsNaN(r.backupAge) {
			return false, ""
		}
		return r.backupAge > 2*r.backupInterval, fmt.Sprintf("the last backup verification ended %s ago (every %s)", secs(r.backupAge), secs(r.backupInterval))
	}},
	{"disk_low", false, func(h *history, o AlertRules) (bool, string) {
		r := h.current
		if !r.has["disk"] {
			return false, "no disk figures"
		}
		free := r.diskFree / r.diskSize
		return free < o.DiskFree, fmt.Sprintf("disk %s free (%s of %s)", pct(free), bytesize(r.diskFree), bytesize(r.diskSize))
	}},
}

// alerter tracks each rule's state and reports transitions: a log line
// and a webhook call when an alert fires, and again when it clears.
type alerter struct {
	o      Options
	log    *slog.Logger
	rules  AlertRules
	state  map[string]*ruleState
	recent []Alert // transitions, newest first

	qmu     sync.Mutex
	queue   []Alert // waiting for the webhook, oldest first
	sending bool
	wg      sync.WaitGroup
}

type ruleState struct {
	pending time.Time // condition true since; zero when false
	firing  *Alert
}

const keepTransitions = 20

func newAlerter(o Options, log *slog.Logger) *alerter {
	return &alerter{o: o, log: log, rules: o.Alerts, state: map[string]*ruleState{}}
}

func (a *alerter) evaluate(ctx context.Context, h *history, now time.Time) {
	for _, r := range rules {
		st := a.state[r.name]
		if st == nil {
			st = &ruleState{}
			a.state[r.name] = st
		}
		on, summary := r.cond(h, a.rules)
		switch {
		case on && st.firing != nil:
			st.firing.Summary = summary // keep the numbers current on the page
		case on:
			if st.pending.IsZero() {
				st.pending = now
			}
			if r.hold && now.Sub(st.pending) < a.rules.For {
				continue
			}
			st.firing = &Alert{Name: r.name, Status: "firing", Summary: summary, Since: now, At: now}
			a.log.LogAttrs(ctx, slog.LevelWarn, "alert firing", slog.String("alert", r.name), slog.String("summary", summary))
			a.report(*st.firing)
		default:
			st.pending = time.Time{}
			if st.firing == nil {
				continue
			}
			resolved := *st.firing
			resolved.Status, resolved.At = "resolved", now
			lasted := now.Sub(resolved.Since)
			// The firing numbers are history; say what holds now.
			resolved.Summary = "resolved after " + dur(lasted.Round(time.Second))
			if summary != "" {
				resolved.Summary += ": now " + summary
			}
			st.firing = nil
			a.log.LogAttrs(ctx, slog.LevelInfo, "alert resolved", slog.String("alert", r.name),
				slog.String("summary", resolved.Summary), slog.Duration("lasted", lasted))
			a.report(resolved)
		}
	}
}

// firing lists the alerts firing now, in rule order.
func (a *alerter) firing() []Alert {
	var out []Alert
	for _, r := range rules {
		if st := a.state[r.name]; st != nil && st.firing != nil {
			out = append(out, *st.firing)
		}
	}
	return out
}

func (a *alerter) report(al Alert) {
	a.recent = append([]Alert{al}, a.recent[:min(len(a.recent), keepTransitions-1)]...)
	if a.o.Webhook == "" {
		return
	}
	a.qmu.Lock()
	a.queue = append(a.queue, al)
	start := !a.sending
	a.sending = true
	a.qmu.Unlock()
	if start {
		a.wg.Add(1)
		go a.deliver()
	}
}

// deliver posts queued alerts one at a time, so the webhook sees them in
// order, and exits when the queue is empty.
func (a *alerter) deliver() {
	defer a.wg.Done()
	for {
		a.qmu.Lock()
		if len(a.queue) == 0 {
			a.sending = false
			a.qmu.Unlock()
			return
		}
		al := a.queue[0]
		a.queue = a.queue[1:]
		a.qmu.Unlock()
		if err := a.post(al); err != nil {
			a.log.LogAttrs(context.Background(), slog.LevelWarn, "alert webhook failed",
				slog.String("alert", al.Name), slog.String("status", al.Status), slog.String("err", err.Error()))
		}
	}
}

func (a *alerter) post(al Alert) error {
	body, err := json.Marshal(al)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, a.o.Webhook, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := a.o.Client.Do(req)
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // without the URL, which may hold a secret
	}
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode >= 300 {
		return fmt.Errorf("webhook answered %s", res.Status)
	}
	return nil
}

// wait blocks until queued alerts are delivered or have failed.
func (a *alerter) wait() { a.wg.Wait() }
