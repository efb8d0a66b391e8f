package main

import (
	"bytes"
	"context"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	// Below the kernel's ephemeral range (32768-60999 on Linux): a port
	// the kernel hands out (":0") is also what it gives the outgoing
	// connections of every other test process, and one of those took
	// a child's admin port between this check and the child's bind
	// (TestKill9UnderLoad, "address already in use", in CI).
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+mrand.IntN(12000)))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeEndToEnd runs the real binary's wiring on a temp data dir,
// exercises the API over TCP, then stops it as SIGTERM would.
func TestServeEndToEnd(t *testing.T) {
	addr, admin := freeAddr(t), freeAddr(t)
	env := map[string]string{
		"ONEBOX_ADDR": addr, "ONEBOX_ADMIN_ADDR": admin, "ONEBOX_DATA_DIR": t.TempDir(), "ONEBOX_HASH_CONCURRENCY": "2",
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- run(ctx, []string{"serve"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &logs, io.Discard)
	}()

	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get("http://" + admin + "/health/ready")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	post := func(path, body string) *http.Response {
		res, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := post("/v1/users", `{"handle":"alice","password":"correct horse"}`); res.StatusCode != http.StatusCreated {
		t.Fatalf("sign-up: %d", res.StatusCode)
	}
	if res := post("/v1/sessions", `{"handle":"alice","password":"correct horse"}`); res.StatusCode != http.StatusCreated {
		t.Fatalf("login: %d", res.StatusCode)
	}
	// The admin listener does not serve the API.
	if res, err := http.Get("http://" + admin + "/v1/users"); err != nil || res.StatusCode != http.StatusNotFound {
		t.Fatalf("admin serves the API: %v %v", res, err)
	}
	// It serves the metrics, which counted the requests above.
	res, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `onebox_http_requests_total{route="/v1/users",method="POST",code="2xx"} 1`) {
		t.Fatalf("GET /metrics: %d\n%s", res.StatusCode, body)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if !strings.Contains(logs.String(), `"msg":"drained"`) {
		t.Fatalf("no drain in logs:\n%s", logs.String())
	}
}

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args    []string
		env     map[string]string
		wantOut string
		wantErr string
	}{
		{args: []string{"version"}, wantOut: "onebox"},
		{args: []string{"config"}, env: map[string]string{"ONEBOX_DATA_DIR": dir}, wantOut: "ONEBOX_DATABASE_URL=sqlite:" + dir + "/onebox.db"},
		{args: []string{"migrate", "-data-dir", dir}},
		{args: []string{"config"}, env: map[string]string{"ONEBOX_CACHE_URL": "memcache://x"}, wantErr: "ONEBOX_CACHE_URL: unknown scheme"},
		{args: []string{"frobnicate"}, wantErr: "unknown command"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := run(context.Background(), tt.args, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }, &out, io.Discard)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v: err %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !strings.Contains(out.String(), tt.wantOut) {
			t.Errorf("%v: err %v, output %q", tt.args, err, out.String())
		}
	}
}

// TestOTLPExport: with OTEL_EXPORTER_OTLP_ENDPOINT set, the spans of a
// request reach the collector over OTLP/HTTP, at the latest when the
// server stops (the exporter is flushed).
func TestOTLPExport(t *testing.T) {
	var posts atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf" {
			posts.Add(1)
		}
		io.Copy(io.Discard, r.Body)
	}))
	defer collector.Close()
	addr := freeAddr(t)
	env := map[string]string{
		"ONEBOX_ADDR": addr, "ONEBOX_ADMIN_ADDR": "", "ONEBOX_DATA_DIR": t.TempDir(),
		"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL,
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-admin-addr="}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard, io.Discard)
	}()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		res, err := http.Get("http://" + addr + "/v1/users")
		if err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving: %v", err)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if posts.Load() == 0 {
		t.Fatal("no spans reached the collector")
	}
}
