// Package deploy_test keeps deploy/ honest: the Grafana dashboard and the
// Prometheus rules name only metrics onebox exposes, the dashboard has
// /ops/'s panels in /ops/'s order, and the rules use onebox's default
// thresholds. They cannot rot silently when a metric is renamed.
package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"onebox/jobs"
	"onebox/ops/dashboard"
	"onebox/ops/metrics"
	"onebox/store"
)

type grafana struct {
	Title  string `json:"title"`
	Panels []struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func readGrafana(t *testing.T) grafana {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("grafana", "onebox.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g grafana
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("grafana/onebox.json: %v", err)
	}
	return g
}

// exposed is every metric name of a /metrics exposition in which every
// onebox series has been touched once.
func exposed(t *testing.T) map[string]bool {
	t.Helper()
	var b bytes.Buffer
	everySeries(t).WritePrometheus(&b)
	names := map[string]bool{}
	for line := range strings.Lines(b.String()) {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// everySeries returns metrics in which every onebox series has been
// touched once, read replicas' and backup verification's included.
func everySeries(t *testing.T) *metrics.Metrics {
	t.Helper()
	m := metrics.New(metrics.Options{Kinds: []string{"photo.process"}})
	ctx := context.Background()
	r := m.Route("GET", "/v1/users/:id")
	r.Observe(200, time.Second)
	m.InFlight(1)
	m.SSE(1)
	m.RateLimit("api", "10.0.0.1", true)
	m.RateLimitFailed("api")
	c := m.Cache("profiles")
	c.Lookup(true)
	c.Load(time.Millisecond, nil)
	c.Evicted()
	m.JobDone("photo.process", time.Second, "ok")
	m.PipelineStep(ctx, "decode", time.Second)
	m.Query(ctx, store.QueryEvent{Name: "users_by_id", Duration: time.Millisecond})
	m.WriterHold(metrics.WriterHold{Query: "users_update", Held: time.Millisecond, Queued: 1})
	m.BackupVerifySchedule(time.Hour)
	m.BackupVerifyRunning(true)
	m.BackupVerified(true, time.Second)
	m.SampleOnce(ctx, metrics.Sources{
		Queue: func(context.Context) (jobs.Stats, error) { return jobs.Stats{}, nil },
		DB: func() metrics.DBStats {
			return metrics.DBStats{
				Backend: "sqlite", Replicas: []metrics.ReplicaStats{{Name: "r1:5432", InRotation: true}},
				WriterHolder: metrics.WriterHolder{Query: "hold_writer", Since: time.Now()},
				FileLocks:    []metrics.FileLock{{Lock: "write", PID: 1}},
				WAL:          &metrics.WALStats{Bytes: 1, MaxBytes: 2, LastResult: "ok", Counts: map[string]int64{"passive/ok": 1}},
			}
		},
		DataDir: t.TempDir(),
	})
	return m
}

var metricName = regexp.MustCompile(`\bonebox_[a-z0-9_]+`)

// mustExist fails for every onebox metric named in text that /metrics
// does not expose.
func mustExist(t *testing.T, where, text string, names map[string]bool) {
	t.Helper()
	for _, n := range metricName.FindAllString(text, -1) {
		if !names[n] {
			t.Errorf("%s: %s is not in /metrics", where, n)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	g := readGrafana(t)
	names := exposed(t)
	var rows, exprs []string
	for _, p := range g.Panels {
		if p.Type == "row" {
			rows = append(rows, p.Title)
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			mustExist(t, "grafana panel "+p.Title, tg.Expr, names)
			if !metricName.MatchString(tg.Expr) {
				t.Errorf("panel %q reads no onebox metric: %s", p.Title, tg.Expr)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	// /ops/ shows its components in dependency order, and its optional
	// ones (read replicas, backups) once their metrics exist; Grafana's
	// rows must follow it, the optional ones included.
	m := everySeries(t)
	d := dashboard.New(dashboard.Options{Scrape: func(w io.Writer) error { m.WritePrometheus(w); return nil }})
	if err := d.Collect(t.Context()); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range d.State().Panels {
		want = append(want, p.Title)
	}
	if !slices.Equal(rows, want) {
		t.Errorf("grafana rows %q, want /ops/'s panels %q", rows, want)
	}
	checkPromQL(t, exprs)
}

// checkPromQL has promtool parse each query, as a recording rule.
func checkPromQL(t *testing.T, exprs []string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found; .ci/run installs it")
		}
		t.Log("promtool not found; the queries are not parsed")
		return
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: grafana\n    rules:\n")
	for _, e := range exprs {
		q, _ := json.Marshal(e) // a JSON string is a YAML string
		b.WriteString("      - record: grafana:panel\n        expr: " + string(q) + "\n")
	}
	file := filepath.Join(t.TempDir(), "panels.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(t.Context(), bin, "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the panels' queries: %v\n%s", err, out)
	}
}

// exprs are the expr: blocks of a rules file, from "expr:" to the
// rule's next key.
func exprs(rules string) []string {
	var out []string
	in := false
	for line := range strings.Lines(rules) {
		key := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(key, "expr:"):
			in = true
			out = append(out, strings.TrimPrefix(key, "expr:"))
		case in && (strings.HasPrefix(key, "for:") || strings.HasPrefix(key, "labels:") || strings.HasPrefix(key, "- ")):
			in = false
		case in:
			out[len(out)-1] += " " + key
		}
	}
	return out
}

// TestAlertRules: the rules name exposed metrics, have each of onebox's
// alerts, and use the default thresholds of config (ONEBOX_ALERT_*).
// promtool test rules (in .ci/run) checks that they fire.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	mustExist(t, "alerts.yml", strings.Join(exprs(text), "\n"), exposed(t))
	for _, a := range []string{"http_error_rate", "http_p95", "queue_growing", "jobs_dead", "disk_low"} {
		if !strings.Contains(text, "onebox_alert: "+a+"\n") {
			t.Errorf("no rule for onebox's alert %s", a)
		}
	}
	for _, want := range []string{
		`{code="5xx"}[1m])) / sum(rate(onebox_http_requests_total[1m])) > 0.05`, // ONEBOX_ALERT_ERROR_RATE
		`{route!~".*/events.*"}[1m])) > 0.05`,                                   // p95 above ONEBOX_ALERT_P95: over 5 % slower
		"for: 5m",                                                               // ONEBOX_ALERT_FOR
		"onebox_disk_free_bytes / onebox_disk_size_bytes < 0.10",                // ONEBOX_ALERT_DISK_FREE
	} {
		if !strings.Contains(strings.Join(strings.Fields(text), " "), want) {
			t.Errorf("alerts.yml lacks %q", want)
		}
	}
}

// TestSystemdUnit lints onebox.service with systemd-analyze verify, which
// exits 0 even on an unknown key or a value it cannot parse: any line it
// prints fails the test. verify also wants ExecStart's binary to exist,
// so the copy it reads starts this test binary instead.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze not found; .ci/run installs it")
		}
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd; it need not run as PID 1)")
	}
	unit, err := os.ReadFile("onebox.service")
	if err != nil {
		t.Fatal(err)
	}
	const bin = "/usr/local/bin/onebox"
	if !bytes.Contains(unit, []byte("ExecStart="+bin+" ")) {
		t.Fatalf("onebox.service: no ExecStart=%s", bin)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "onebox.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("ExecStart="+bin), []byte("ExecStart="+self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify onebox.service: %v\n%s", err, out)
	}
}
