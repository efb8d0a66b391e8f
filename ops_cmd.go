package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"onebox/config"
	"onebox/jobs"
	"onebox/ops"
	"onebox/ops/advise"
	"onebox/ops/dashboard"
	"onebox/ops/drill"
)

// newDrill returns the fault injection when ONEBOX_DRILLS is on, else
// nil (a nil *drill.Drill leaves a query hook as it is).
func newDrill(cfg config.Config, log *slog.Logger) *drill.Drill {
	if !cfg.Drills {
		return nil
	}
	log.Warn("drills are on: the admin listener's /ops/drill/ can slow this instance down")
	return drill.New(drill.Options{Logger: log})
}

// registerDrillJobs registers the drills' jobs when drills are on: the
// stuck job's, and the writer-hold's when the store has a writer to hold
// (SQLite).
func registerDrillJobs(runner *jobs.Runner, dr *drill.Drill, st any, q jobs.Producer) {
	if dr == nil {
		return
	}
	// One at a time, so each abandoned job frees the slot the next takes;
	// one attempt, so each is dead-lettered rather than stuck again.
	runner.Register(drill.KindStuck, dr.EnableStuckJobs(q), jobs.KindOptions{Concurrency: 1, MaxAttempts: 1, Timeout: drill.StuckTimeout})
	holder, ok := st.(interface {
		HoldWriter(ctx context.Context, d time.Duration) error
	})
	if !ok {
		return
	}
	h := dr.EnableHoldWriter(drill.HoldWriterOptions{Queue: q, Hold: holder.HoldWriter})
	runner.Register(drill.KindHoldWriter, h, jobs.KindOptions{Concurrency: 1, MaxAttempts: 1, Timeout: time.Minute})
}

// newDashboard builds the operator dashboard on what obs observes, with
// the last 5xx answers and the dead-lettered jobs of queue as its recent
// errors, and queue's dead letters to list and redrive (waking the
// workers with wake). Run it, and serve its Handler under /ops/ on the
// admin listener.
func newDashboard(cfg config.Config, log *slog.Logger, obs *observability, queue jobs.Inspector, wake func(), dr *drill.Drill, guard *ops.Guard) *dashboard.Dashboard {
	if cfg.OpsToken == "" && !loopback(cfg.AdminAddr) {
		log.Warn("ONEBOX_ADMIN_ADDR is not a loopback address and ONEBOX_OPS_TOKEN is empty: /ops, /jobs and /metrics refuse every request (health still answers)")
	}
	o := dashboard.Options{
		Guard: guard,
		Scrape: func(w io.Writer) error {
			if obs.metrics == nil {
				return errors.New("metrics are off (ONEBOX_METRICS=false)")
			}
			obs.metrics.WritePrometheus(w)
			return nil
		},
		SlowQueries: func() []dashboard.SlowQuery {
			var out []dashboard.SlowQuery
			for _, q := range obs.slow.Recent() {
				out = append(out, dashboard.SlowQuery{Time: q.Time, Name: q.Name, SQL: q.SQL, Duration: q.Duration, Plan: q.Plan, RequestID: q.RequestID})
			}
			return out
		},
		SlowTraces: func() []dashboard.Trace {
			var out []dashboard.Trace
			for _, tr := range obs.tracing.Slowest() {
				t := dashboard.Trace{ID: tr.TraceID, Name: tr.Name, RequestID: tr.RequestID, Start: tr.Start, Duration: tr.Duration}
				for _, sp := range tr.Spans {
					t.Spans = append(t.Spans, dashboard.Span{Name: sp.Name, Offset: sp.Offset, Duration: sp.Duration, Depth: sp.Depth, Error: sp.Error})
				}
				out = append(out, t)
			}
			return out
		},
		RecentErrors: func() []dashboard.ErrorEntry {
			var out []dashboard.ErrorEntry
			for _, e := range obs.errors.Recent() {
				out = append(out, dashboard.ErrorEntry{Time: e.Time, Where: e.Route, Status: e.Status, Message: e.Message, RequestID: e.RequestID})
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			dead, err := queue.Dead(ctx, jobs.DeadFilter{}, 20)
			if err != nil {
				return append(out, dashboard.ErrorEntry{Time: time.Now(), Where: "queue", Message: "reading dead jobs: " + err.Error()})
			}
			for _, d := range dead {
				out = append(out, dashboard.ErrorEntry{Time: d.DiedAt, Where: "job " + d.Kind + " (dead-lettered)", Message: d.LastError, RequestID: d.RequestID})
			}
			return out
		},
		Dead: queue, OnRedrive: wake,
		Interval: cfg.OpsInterval, Token: cfg.OpsToken, Webhook: cfg.AlertWebhook, Logger: log,
		// A component fails by the numbers that page.
		Thresholds: dashboard.Thresholds{HTTPErrorRate: cfg.AlertErrorRate, HTTPP95: cfg.AlertP95, QueueGrowth: cfg.AlertFor, DiskFree: cfg.AlertDiskFree},
		Alerts:     dashboard.AlertRules{ErrorRate: cfg.AlertErrorRate, P95: cfg.AlertP95, For: cfg.AlertFor, DiskFree: cfg.AlertDiskFree},
	}
	if dr != nil { // not a typed nil in the interface
		o.Drill = dr
	}
	return dashboard.New(o)
}

// loopback reports whether a listen address takes only this host's
// connections.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// opsCommand is `onebox ops diagnose|advise`: it asks the running
// instance's admin listener (ONEBOX_ADMIN_ADDR, with ONEBOX_OPS_TOKEN)
// for its reading of the dependency chain, or for its scale-out advice,
// and prints it. It fails when the instance cannot be reached, saying
// what to set.
func opsCommand(ctx context.Context, cfg config.Config, args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] != "diagnose" && args[0] != "advise" {
		return errors.New("usage: onebox ops diagnose|advise (see onebox ops --help)")
	}
	if cfg.AdminAddr == "" {
		return fmt.Errorf("%s is empty: there is no admin listener to ask (set ONEBOX_ADMIN_ADDR or -admin-addr to the instance's)", cfg.Name("ONEBOX_ADMIN_ADDR"))
	}
	base, err := adminURL(cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Name("ONEBOX_ADMIN_ADDR"), err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if args[0] == "advise" {
		var a advise.Advice
		if err := fetchOps(ctx, base+"/ops/api/advise", cfg.OpsToken, &a); err != nil {
			return err
		}
		return a.WriteText(stdout)
	}
	var diag dashboard.Diagnosis
	if err := fetchOps(ctx, base+"/ops/api/diagnose", cfg.OpsToken, &diag); err != nil {
		return err
	}
	return diag.WriteText(stdout)
}

// adminURL is where this host reaches the admin listener: a listener on
// every address (":8081", "0.0.0.0:8081") is asked on loopback.
func adminURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	switch ip := net.ParseIP(host); {
	case host == "" || ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// fetchOps decodes the JSON the admin listener serves at u into v.
func fetchOps(ctx context.Context, u, token string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	base := req.URL.Scheme + "://" + req.URL.Host
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is said once, below
		}
		return fmt.Errorf("cannot reach the admin listener at %s (set ONEBOX_ADMIN_ADDR or -admin-addr to the instance's): %w", strings.TrimPrefix(base, "http://"), err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var p struct{ Detail string }
		body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		if json.Unmarshal(body, &p) != nil || p.Detail == "" {
			p.Detail = strings.TrimSpace(string(body))
		}
		if res.StatusCode == http.StatusUnauthorized {
			p.Detail += " (set ONEBOX_OPS_TOKEN or -ops-token to the instance's)"
		}
		return fmt.Errorf("%s: %s: %s", u, res.Status, p.Detail)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	return nil
}
