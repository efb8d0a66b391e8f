package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"onebox/ops/dashboard"
)

// serve sends a request to h as if it arrived on the listener address
// local.
func serve(h http.Handler, local, method, target string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	if local != "" {
		addr, _ := net.ResolveTCPAddr("tcp", local)
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, addr))
		req.Host = local // as a client that dialled the listener names it
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestAccess(t *testing.T) {
	t.Parallel()
	open := dashboard.New(dashboard.Options{Scrape: func(io.Writer) error { return nil }}).Handler()
	locked := dashboard.New(dashboard.Options{Scrape: func(io.Writer) error { return nil }, Token: "s3cret"}).Handler()
	for _, c := range []struct {
		name    string
		h       http.Handler
		local   string
		target  string
		headers []string
		want    int
	}{
		{"loopback needs no token", open, "127.0.0.1:8081", "/ops/", nil, 200},
		{"loopback v6", open, "[::1]:8081", "/ops/api/state", nil, 200},
		{"public address without a configured token", open, "10.1.2.3:8081", "/ops/", nil, 403},
		{"public address, bearer", locked, "10.1.2.3:8081", "/ops/api/diagnose", []string{"Authorization", "Bearer s3cret"}, 200},
		{"public address, query token", locked, "10.1.2.3:8081", "/ops/?token=s3cret", nil, 200},
		{"wrong token", locked, "10.1.2.3:8081", "/ops/api/state", []string{"Authorization", "Bearer nope"}, 401},
		{"no token", locked, "10.1.2.3:8081", "/ops/api/state", nil, 401},
		{"a configured token is required on loopback too", locked, "127.0.0.1:8081", "/ops/api/state", nil, 401},
		{"static files are public", locked, "10.1.2.3:8081", "/ops/static/ops.js", nil, 200},
		{"drills off", open, "127.0.0.1:8081", "/ops/drill/db-latency", nil, 404},
		{"unknown page", open, "127.0.0.1:8081", "/ops/nope", nil, 404},
	} {
		w := serve(c.h, c.local, "GET", c.target, c.headers...)
		if w.Code != c.want {
			t.Errorf("%s: %d, want %d: %s", c.name, w.Code, c.want, w.Body)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", c.name, csp)
		}
		if w.Code == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", c.name)
		}
	}
}

// TestPage renders the page with data and checks it has nothing inline
// that the CSP would block.
func TestPage(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{
		SlowQueries: func() []dashboard.SlowQuery {
			return []dashboard.SlowQuery{{Time: time.Now(), Name: "photos_by_owner", SQL: "SELECT <x>", Duration: 2 * time.Second, Plan: "SCAN photos"}}
		},
		SlowTraces: func() []dashboard.Trace {
			start := time.Now()
			return []dashboard.Trace{{Name: "GET /v1/users/:id", Start: start, Duration: time.Second, Spans: []dashboard.Span{
				{Name: "GET /v1/users/:id", Duration: time.Second},
				{Name: "db users_by_id", Offset: 100 * time.Millisecond, Duration: 800 * time.Millisecond, Depth: 1},
			}}}
		},
	})
	p.gauge(`onebox_db_replica_in_rotation{replica="r1:5432"}`, 1)
	p.gauge(`onebox_db_replica_lag_bytes{replica="r1:5432"}`, 2048)
	p.gauge(`onebox_db_replica_lag_seconds{replica="r1:5432"}`, 0.5)
	p.warm(3)
	w := serve(p.d.Handler(), "127.0.0.1:1", "GET", "/ops/")
	body := w.Body.String()
	if w.Code != 200 || w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("%d %s", w.Code, w.Header())
	}
	for _, want := range []string{
		`id="panel-database"`, `class="panel s-healthy"`, "SELECT &lt;x&gt;", "SCAN photos", "db users_by_id",
		`<rect x="10" y="0" width="80"`, "no error source wired", `data-interval="1000"`,
		`id="panel-replicas"`, "<tr><td>r1:5432</td><td>in</td><td>2.0 KiB</td><td>500 ms</td></tr>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	for _, banned := range []string{"<script>", "style=", " on"} {
		if i := strings.Index(body, banned); i >= 0 && !(banned == " on" && !strings.Contains(body[i:i+12], "=")) {
			t.Errorf("page has inline %q near %q", banned, body[max(i-40, 0):min(i+40, len(body))])
		}
	}
	// GET /ops redirects to the page, keeping the token.
	p2 := dashboard.New(dashboard.Options{Scrape: func(io.Writer) error { return nil }, Token: "t"})
	if w := serve(p2.Handler(), "", "GET", "/ops?token=t"); w.Code/100 != 3 || w.Header().Get("Location") != "/ops/?token=t" {
		t.Fatalf("/ops: %d %s", w.Code, w.Header().Get("Location"))
	}
}

func TestStateJSON(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{})
	p.tick()
	p.normal()
	p.tick()
	w := serve(p.d.Handler(), "127.0.0.1:1", "GET", "/ops/api/state")
	var s struct {
		Panels []struct {
			Name    string
			State   string
			Metrics []struct{ Key, Value, Spark string }
		}
		Diagnosis struct{ Healthy bool }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Panels) != 7 || s.Panels[0].Name != "http" || s.Panels[0].Metrics[0].Value != "20/s" || !s.Diagnosis.Healthy {
		t.Fatalf("%s", w.Body)
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("cache-control %q", w.Header().Get("Cache-Control"))
	}
}

// drill is a stand-in fault injection.
type drill struct{ active bool }

func (d *drill) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.active = r.Method == http.MethodPost
	w.WriteHeader(http.StatusNoContent)
}

func (d *drill) Active() []string {
	if d.active {
		return []string{"db-latency +500ms"}
	}
	return nil
}

func TestDrillMounted(t *testing.T) {
	t.Parallel()
	dr := &drill{}
	d := dashboard.New(dashboard.Options{Scrape: func(io.Writer) error { return nil }, Drill: dr, Token: "t"})
	if w := serve(d.Handler(), "", "POST", "/ops/drill/db-latency"); w.Code != 401 || dr.active {
		t.Fatalf("unauthenticated drill: %d", w.Code)
	}
	if w := serve(d.Handler(), "", "POST", "/ops/drill/db-latency", "Authorization", "Bearer t"); w.Code != 204 || !dr.active {
		t.Fatalf("drill: %d", w.Code)
	}
	d.Collect(context.Background())
	if got := d.Diagnose().Drills; len(got) != 1 || got[0] != "db-latency +500ms" {
		t.Fatalf("drills %v", got)
	}
}
