package dashboard_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"onebox/ops/dashboard"
)

// webhook is an httptest server that collects the alerts posted to it.
func webhook(t *testing.T) (string, <-chan dashboard.Alert) {
	t.Helper()
	got := make(chan dashboard.Alert, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a dashboard.Alert
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook got %s %s", r.Method, r.Header.Get("Content-Type"))
		}
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		got <- a
	}))
	t.Cleanup(srv.Close)
	return srv.URL, got
}

func mustReceive(t *testing.T, ch <-chan dashboard.Alert) dashboard.Alert {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook call")
		return dashboard.Alert{}
	}
}

// TestErrorRateAlert: the error-rate alert fires once after its
// condition has held for the window, and clears once, each time with a
// log line and a webhook call.
func TestErrorRateAlert(t *testing.T) {
	t.Parallel()
	url, got := webhook(t)
	logs := &recorder{}
	p := newProc(t, dashboard.Options{
		Webhook: url, Logger: slog.New(logs),
		Alerts: dashboard.AlertRules{For: 3 * time.Second, ErrorRate: 0.05},
	})
	p.warm(5)
	failing := func() {
		p.normal()
		for range 10 {
			p.request("/v1/users/:id", "5xx", time.Millisecond)
		}
		p.tick()
	}
	for range 3 { // the ratio crosses 5 % on the first tick; it must hold 3 s
		failing()
	}
	if n := len(p.d.State().Alerts); n != 0 || logs.count("alert firing http_error_rate") != 0 {
		t.Fatalf("fired before the window: %d alerts", n)
	}
	for range 5 {
		failing()
	}
	s := p.d.State()
	if len(s.Alerts) != 1 || s.Alerts[0].Name != "http_error_rate" || !strings.Contains(s.Alerts[0].Summary, "HTTP 5xx at 33 % of 150 requests") {
		t.Fatalf("alerts %+v", s.Alerts)
	}
	p.warm(10)
	if n := len(p.d.State().Alerts); n != 0 {
		t.Fatalf("still firing: %+v", p.d.State().Alerts)
	}
	if f, r := logs.count("alert firing http_error_rate"), logs.count("alert resolved http_error_rate"); f != 1 || r != 1 {
		t.Fatalf("logged %d firing and %d resolved", f, r)
	}
	fired, resolved := mustReceive(t, got), mustReceive(t, got)
	if fired.Name != "http_error_rate" || fired.Status != "firing" || resolved.Status != "resolved" || !resolved.Since.Equal(fired.Since) || !resolved.At.After(fired.At) {
		t.Fatalf("webhook got %+v then %+v", fired, resolved)
	}
	select {
	case a := <-got:
		t.Fatalf("extra webhook call %+v", a)
	case <-time.After(50 * time.Millisecond):
	}
	if log := p.d.State().AlertLog; len(log) != 2 || log[0].Status != "resolved" {
		t.Fatalf("alert log %+v", log)
	}
	// The resolved line says how long it lasted and what holds now, not
	// the numbers it fired on.
	if want := "resolved after 9s: now HTTP 5xx at 0 % of "; !strings.HasPrefix(resolved.Summary, want) {
		t.Fatalf("resolved summary %q, want it to start %q", resolved.Summary, want)
	}
}

// TestImmediateAlerts: dead-lettered jobs, a nearly full disk and a
// queue rising for the whole window fire at once.
func TestImmediateAlerts(t *testing.T) {
	t.Parallel()
	url, got := webhook(t)
	p := newProc(t, dashboard.Options{Webhook: url, Alerts: dashboard.AlertRules{For: 3 * time.Second}})
	p.normal()
	p.tick()
	p.gauge(`onebox_jobs_dead{kind="photo"}`, 2)
	p.gauge("onebox_disk_free_bytes", 5<<30)
	p.tick()
	names := map[string]string{}
	for range 2 {
		a := mustReceive(t, got)
		names[a.Name] = a.Summary
	}
	if !strings.Contains(names["jobs_dead"], "2 dead-lettered jobs") || !strings.Contains(names["disk_low"], "disk 5.0 % free") {
		t.Fatalf("alerts %v", names)
	}
	for i := range 2 {
		p.gauge(`onebox_jobs_queued{kind="photo"}`, float64(10*(i+1)))
		p.tick()
	}
	if a := mustReceive(t, got); a.Name != "queue_growing" || a.Summary != "queue depth rose from 0 to 20 over 3s" {
		t.Fatalf("queue alert %+v", a)
	}
}

// TestBackupAlerts: a failed backup verification fires at once and
// clears when one passes; one older than twice the interval fires too.
func TestBackupAlerts(t *testing.T) {
	t.Parallel()
	url, got := webhook(t)
	p := newProc(t, dashboard.Options{Webhook: url})
	p.gauge("onebox_backup_verify_interval_seconds", 60)
	p.gauge("onebox_backup_verify_age_seconds", 1)
	p.gauge("onebox_backup_verify_ok", 1)
	p.warm(2)
	p.gauge("onebox_backup_verify_ok", 0)
	p.tick()
	if a := mustReceive(t, got); a.Name != "backup_verify_failed" || a.Status != "firing" || !strings.Contains(a.Summary, "backup verify failed") {
		t.Fatalf("alert %+v", a)
	}
	p.gauge("onebox_backup_verify_ok", 1)
	p.tick()
	if a := mustReceive(t, got); a.Name != "backup_verify_failed" || a.Status != "resolved" {
		t.Fatalf("alert %+v", a)
	}
	p.gauge("onebox_backup_verify_age_seconds", 120)
	p.tick()
	select {
	case a := <-got:
		t.Fatalf("at twice the interval: %+v", a)
	case <-time.After(50 * time.Millisecond):
	}
	p.gauge("onebox_backup_verify_age_seconds", 121)
	p.tick()
	if a := mustReceive(t, got); a.Name != "backup_verify_stale" || a.Summary != "the last backup verification ended 2m1s ago (every 1m)" {
		t.Fatalf("alert %+v", a)
	}
}
