package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// opsToken is an operator token long enough for the configuration.
const opsToken = "s3cret-s3cret-s3cret-s3cret-s3cret"

// serveWithDrills runs `onebox serve` with drills on and opsToken, until
// the test ends, and returns once it is ready: its API and admin
// addresses, and the environment it read (for CLI calls against it).
func serveWithDrills(t *testing.T) (addr, admin string, getenv func(string) (string, bool)) {
	t.Helper()
	addr, admin = freeAddr(t), freeAddr(t)
	env := map[string]string{
		"ONEBOX_ADDR": addr, "ONEBOX_ADMIN_ADDR": admin, "ONEBOX_DATA_DIR": t.TempDir(), "ONEBOX_HASH_CONCURRENCY": "2",
		"ONEBOX_OPS_TOKEN": opsToken, "ONEBOX_OPS_INTERVAL": "100ms", "ONEBOX_DRILLS": "true",
	}
	getenv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, getenv, io.Discard, io.Discard) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if res, _, _ := request(http.DefaultClient, "GET", "http://"+admin+"/health/ready", "", "", nil); res != nil && res.StatusCode == http.StatusOK {
			return addr, admin, getenv
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready")
		}
	}
}

// TestOpsEndToEnd serves with drills on and a token, reads the dashboard
// and the diagnosis the way an operator would, and runs a drill.
func TestOpsEndToEnd(t *testing.T) {
	_, admin, getenv := serveWithDrills(t)
	do := func(method, path, token string) (int, string) {
		t.Helper()
		res, b, err := request(http.DefaultClient, method, "http://"+admin+path, token, "", nil)
		if res == nil {
			return 0, err.Error()
		}
		return res.StatusCode, string(b)
	}
	if code, _ := do("GET", "/ops/", ""); code != http.StatusUnauthorized {
		t.Fatalf("/ops/ without the token: %d", code)
	}
	if code, body := do("GET", "/ops/", opsToken); code != http.StatusOK || !strings.Contains(body, `id="panel-database"`) {
		t.Fatalf("/ops/: %d %.200s", code, body)
	}
	if code, body := do("POST", "/ops/drill/db-latency?delay=50ms&for=1m", opsToken); code != http.StatusOK {
		t.Fatalf("drill: %d %s", code, body)
	}
	// The diagnosis reads the dashboard's 100ms samples: ask until they
	// show the drill, as an operator would, within a bound.
	wants := []string{"DRILL RUNNING: database latency +50ms", "Chain (at ", "Database", "needs disk"}
	var out bytes.Buffer
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out.Reset()
		if err := run(context.Background(), []string{"ops", "diagnose"}, getenv, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(wants, func(w string) bool { return !strings.Contains(out.String(), w) }) || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range wants {
		if !strings.Contains(out.String(), want) {
			t.Errorf("diagnose output lacks %q:\n%s", want, out.String())
		}
	}
	wrong := func(k string) (string, bool) {
		if k == "ONEBOX_OPS_TOKEN" {
			return "nope-nope-nope-nope-nope-nope-nope-nope", true
		}
		return getenv(k)
	}
	if err := run(context.Background(), []string{"ops", "diagnose"}, wrong, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "set ONEBOX_OPS_TOKEN or -ops-token") {
		t.Errorf("wrong token: %v", err)
	}
	if code, _ := do("DELETE", "/ops/drill/db-latency", opsToken); code != http.StatusOK {
		t.Errorf("stopping the drill: %d", code)
	}
}

func TestOpsCommand(t *testing.T) {
	closed := freeAddr(t) // nothing listens there any more
	for _, tt := range []struct {
		args    []string
		env     map[string]string
		wantOut string
		wantErr string
	}{
		{args: []string{"ops", "diagnose"}, env: map[string]string{"ONEBOX_ADMIN_ADDR": closed}, wantErr: "cannot reach the admin listener at " + closed + " (set ONEBOX_ADMIN_ADDR or -admin-addr"},
		{args: []string{"ops", "-admin-addr=", "diagnose"}, wantErr: "-admin-addr is empty"},
		{args: []string{"ops", "diagnose"}, env: map[string]string{"ONEBOX_ADMIN_ADDR": ""}, wantErr: "ONEBOX_ADMIN_ADDR is empty"},
		{args: []string{"ops"}, wantErr: "usage: onebox ops diagnose|advise"},
		{args: []string{"ops", "advise"}, env: map[string]string{"ONEBOX_ADMIN_ADDR": closed}, wantErr: "cannot reach the admin listener at " + closed},
		{args: []string{"ops", "frobnicate"}, wantErr: "usage: onebox ops diagnose"},
		// The token and the webhook are secrets as a whole.
		{args: []string{"config"}, env: map[string]string{"ONEBOX_OPS_TOKEN": "t0ken-t0ken-t0ken-t0ken-t0ken-t0ken", "ONEBOX_ALERT_WEBHOOK": "https://hooks.example/T1/s3cret"}, wantOut: "ONEBOX_OPS_TOKEN=xxxxx\n"},
		{args: []string{"config"}, env: map[string]string{"ONEBOX_DEVICE_KEY": "t0ken-t0ken-t0ken-t0ken-t0ken-t0ken"}, wantOut: "ONEBOX_DEVICE_KEY=xxxxx\n"},
		{args: []string{"config"}, env: map[string]string{"ONEBOX_OPS_TOKEN": "t0ken"}, wantErr: "ONEBOX_OPS_TOKEN: want at least 32 bytes"},
		{args: []string{"config"}, env: map[string]string{"ONEBOX_ALERT_ERROR_RATE": "5"}, wantErr: "ONEBOX_ALERT_ERROR_RATE: want a fraction"},
	} {
		var out bytes.Buffer
		env := map[string]string{"ONEBOX_ADMIN_ADDR": "127.0.0.1:8081"}
		for k, v := range tt.env {
			env[k] = v
		}
		err := run(context.Background(), tt.args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &out, io.Discard)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v: err %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !strings.Contains(out.String(), tt.wantOut) || strings.Contains(out.String(), "s3cret") || strings.Contains(out.String(), "t0ken") {
			t.Errorf("%v: err %v, output %q", tt.args, err, out.String())
		}
	}
}

func TestAdminURL(t *testing.T) {
	for addr, want := range map[string]string{
		":8081": "http://127.0.0.1:8081", "0.0.0.0:8081": "http://127.0.0.1:8081", "[::]:8081": "http://[::1]:8081",
		"10.0.0.5:9000": "http://10.0.0.5:9000", "localhost:8081": "http://localhost:8081",
	} {
		if got, err := adminURL(addr); err != nil || got != want {
			t.Errorf("adminURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
}

// TestOpsAdviseUnderLoad: with reads and writes going through a serving
// instance, `onebox ops advise` answers with the numbers that decide:
// the cache's hit ratio and the database time it saves, the SQLite
// writer's busy share, the limiter's checks.
func TestOpsAdviseUnderLoad(t *testing.T) {
	addr, admin := freeAddr(t), freeAddr(t)
	env := map[string]string{
		"ONEBOX_ADDR": addr, "ONEBOX_ADMIN_ADDR": admin, "ONEBOX_DATA_DIR": t.TempDir(), "ONEBOX_HASH_CONCURRENCY": "2",
		"ONEBOX_OPS_INTERVAL": "100ms",
	}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, getenv, io.Discard, io.Discard) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if res, err := http.Get("http://" + admin + "/health/ready"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready")
		}
	}
	res, err := http.Post("http://"+addr+"/v1/users", "application/json", strings.NewReader(`{"handle":"alice","password":"correct horse"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	profile := "http://" + addr + res.Header.Get("Location")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("sign-up: %d", res.StatusCode)
	}
	// Load until the advice has numbers for the cache and the writer,
	// within a bound: reads of one profile (hits after the first), and
	// sign-ups, which write.
	wants := []string{"YES Does the cache pay?", "of lookups hit, saving the database", "writer busy: ", "Move SQLite to PostgreSQL?", "rejected (", "threshold: hit ratio ≥ 50%"}
	var out bytes.Buffer
	for i, deadline := 0, time.Now().Add(30*time.Second); ; i++ {
		for range 20 {
			if res, err := http.Get(profile); err == nil {
				res.Body.Close()
			}
		}
		body := fmt.Sprintf(`{"handle":"user%d","password":"correct horse"}`, i)
		if res, err := http.Post("http://"+addr+"/v1/users", "application/json", strings.NewReader(body)); err == nil {
			res.Body.Close()
		}
		out.Reset()
		if err := run(context.Background(), []string{"ops", "advise"}, getenv, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(wants, func(w string) bool { return !strings.Contains(out.String(), w) }) || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range wants {
		if !strings.Contains(out.String(), want) {
			t.Errorf("advise output lacks %q:\n%s", want, out.String())
		}
	}
	if !regexp.MustCompile(`writer busy: \d+%`).MatchString(out.String()) || !regexp.MustCompile(`hit ratio: \d+%`).MatchString(out.String()) {
		t.Errorf("no measured busy share or hit ratio:\n%s", out.String())
	}
}

// TestWriterHoldDrill: a job holds the SQLite writer while profile edits
// queue behind it; `onebox ops diagnose` names the database as the root
// cause and the job kind as the writer's holder.
func TestWriterHoldDrill(t *testing.T) {
	addr, admin, getenv := serveWithDrills(t)
	admin = "http://" + admin
	res, body, err := request(http.DefaultClient, "POST", admin+"/ops/drill/writer-hold?for=5s", opsToken, "", nil)
	if res == nil || res.StatusCode != http.StatusAccepted {
		t.Fatalf("drill: %v %s %v", res, body, err)
	}
	// A sign-up is a write: it queues behind the job.
	go func() {
		_, _, _ = request(http.DefaultClient, "POST", "http://"+addr+"/v1/users", "", "application/json", strings.NewReader(`{"handle":"waiter","password":"correct horse"}`))
	}()
	// The hold in progress names the job ("writer held 1.2 s so far by job
	// drill.hold_writer (query hold_writer); writes waiting: 1"), and so
	// does the writer's top holder once it ended.
	wants := []string{"likely root cause: Database", "by job drill.hold_writer (", "hold_writer)", "Root cause: Database"}
	var out bytes.Buffer
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out.Reset()
		if err := run(context.Background(), []string{"ops", "diagnose"}, getenv, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(wants, func(w string) bool { return !strings.Contains(out.String(), w) }) || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range wants {
		if !strings.Contains(out.String(), want) {
			t.Errorf("diagnose output lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("onebox ops diagnose:\n%s", out.String())
}
