package app_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"onebox/auth"
	"onebox/cache"
	"onebox/photos"
	"onebox/ratelimit"
	"onebox/store"
)

func TestBadInputIsAProblem(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	id, token := b.signup("henry")
	auth := bearer(token)
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		pointer                  string // first errors[].pointer, if any
	}{
		{"malformed JSON", "PATCH", "/v1/users/me", `{"bio":`, auth, 400, ""},
		{"trailing data", "PATCH", "/v1/users/me", `{"bio":"a"} {}`, auth, 400, ""},
		{"not an object", "PATCH", "/v1/users/me", `["bio"]`, auth, 422, ""},
		{"unknown field", "PATCH", "/v1/users/me", `{"nickname":"x"}`, auth, 422, "/nickname"},
		{"wrong type", "PATCH", "/v1/users/me", `{"bio":5}`, auth, 422, "/bio"},
		{"bio too long", "PATCH", "/v1/users/me", `{"bio":"` + strings.Repeat("é", 1001) + `"}`, auth, 422, "/bio"},
		{"control character", "PATCH", "/v1/users/me", `{"display_name":"a\u0007"}`, auth, 422, "/display_name"},
		{"body too large", "PATCH", "/v1/users/me", `{"bio":"` + strings.Repeat("a", 5000) + `"}`, auth, 413, ""},
		{"wrong content type", "PATCH", "/v1/users/me", `{"bio":"a"}`, append([]string{"Content-Type", "text/plain"}, auth...), 415, ""},
		{"no credentials", "PATCH", "/v1/users/me", `{"bio":"a"}`, nil, 401, ""},
		{"bad bearer", "GET", "/v1/users/me", "", []string{"Authorization", "Bearer nope"}, 401, ""},
		{"not bearer", "GET", "/v1/users/me", "", []string{"Authorization", "Basic YTpi"}, 401, ""},
		{"bad handle", "POST", "/v1/users", `{"handle":"9lives","password":"correct horse"}`, nil, 422, "/handle"},
		{"reserved handle", "POST", "/v1/users", `{"handle":"Me","password":"correct horse"}`, nil, 422, "/handle"},
		{"short password", "POST", "/v1/users", `{"handle":"ivy","password":"short"}`, nil, 422, "/password"},
		{"missing password", "POST", "/v1/users", `{"handle":"ivy"}`, nil, 422, "/password"},
		{"null handle", "POST", "/v1/users", `{"handle":null,"password":"correct horse"}`, nil, 422, "/handle"},
		{"taken handle", "POST", "/v1/users", `{"handle":"HENRY","password":"correct horse"}`, nil, 409, ""},
		{"wrong password", "POST", "/v1/sessions", `{"handle":"henry","password":"wrong wrong"}`, nil, 401, ""},
		{"unknown handle", "POST", "/v1/sessions", `{"handle":"nobody","password":"wrong wrong"}`, nil, 401, ""},
		{"missing user", "GET", "/v1/users/01900000-0000-7000-8000-000000000000", "", nil, 404, ""},
		{"malformed id", "GET", "/v1/users/" + strings.ToUpper(id), "", nil, 404, ""},
		{"unknown route", "GET", "/v1/nothing", "", nil, 404, ""},
		{"wrong method", "PUT", "/v1/users", "", nil, 405, ""},
		{"bad cursor", "GET", "/v1/users?cursor=zz!", "", nil, 400, ""},
		{"bad limit", "GET", "/v1/users?limit=1000", "", nil, 400, ""},
		{"malformed If-Match", "PATCH", "/v1/users/me", `{"bio":"a"}`, append([]string{"If-Match", "1"}, auth...), 412, ""},
	}
	for _, tt := range tests {
		r := b.do(tt.method, tt.path, tt.body, tt.headers...)
		if r.StatusCode != tt.status {
			t.Errorf("%s: status %d, want %d (%s)", tt.name, r.StatusCode, tt.status, r.body)
			continue
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", tt.name, ct)
			continue
		}
		m := r.json(t)
		if m["status"] != float64(tt.status) || m["type"] == "" || m["title"] == "" || m["request_id"] != r.Header.Get("X-Request-ID") {
			t.Errorf("%s: problem %v", tt.name, m)
		}
		if tt.pointer != "" {
			errs, _ := m["errors"].([]any)
			if len(errs) == 0 || errs[0].(map[string]any)["pointer"] != tt.pointer {
				t.Errorf("%s: errors %v, want pointer %s", tt.name, m["errors"], tt.pointer)
			}
		}
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) {
		s.opts.Policies.API = ratelimit.Policy{Name: "api", Limit: 3, Window: time.Hour}
	})
	for i := range 3 {
		r := b.do("GET", "/v1/users", "")
		mustStatus(t, r, http.StatusOK)
		if p := r.Header.Get("RateLimit-Policy"); p != `"api";q=3;w=3600` {
			t.Fatalf("RateLimit-Policy %q", p)
		}
		if s := r.Header.Get("RateLimit"); !strings.HasPrefix(s, `"api";r=`+string(rune('2'-i))+";t=") {
			t.Fatalf("request %d: RateLimit %q", i, s)
		}
	}
	// A forged X-Forwarded-For does not buy a fresh bucket: no proxy is trusted.
	r := b.do("GET", "/v1/users", "", "X-Forwarded-For", "203.0.113.9")
	mustStatus(t, r, http.StatusTooManyRequests)
	if r.Header.Get("Retry-After") != "1200" || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("429 headers %v", r.Header)
	}
	// Health checks are never limited.
	mustStatus(t, b.do("GET", "/health/live", ""), http.StatusOK)
}

func TestTrustedProxyForwardedFor(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) {
		s.opts.Policies.API = ratelimit.Policy{Name: "api", Limit: 1, Window: time.Hour}
		s.opts.TrustedProxies = mustPrefixes(t, "127.0.0.0/8", "::1/128")
	})
	mustStatus(t, b.do("GET", "/v1/users", "", "X-Forwarded-For", "203.0.113.1"), http.StatusOK)
	mustStatus(t, b.do("GET", "/v1/users", "", "X-Forwarded-For", "203.0.113.1"), http.StatusTooManyRequests)
	mustStatus(t, b.do("GET", "/v1/users", "", "X-Forwarded-For", "203.0.113.2"), http.StatusOK)
	// Two addresses of one IPv6 /64 share a bucket.
	mustStatus(t, b.do("GET", "/v1/users", "", "X-Forwarded-For", "2001:db8:1:2::1"), http.StatusOK)
	mustStatus(t, b.do("GET", "/v1/users", "", "X-Forwarded-For", "2001:db8:1:2::ffff"), http.StatusTooManyRequests)
}

func TestLoginLimitedPerHandle(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) {
		s.opts.Policies.AuthHandle = ratelimit.Policy{Name: "auth-handle", Limit: 2, Window: time.Hour}
	})
	b.signup("judy")
	for range 1 {
		mustStatus(t, b.do("POST", "/v1/sessions", `{"handle":"judy","password":"guess guess"}`), http.StatusUnauthorized)
	}
	r := b.do("POST", "/v1/sessions", `{"handle":"JUDY","password":"guess again"}`)
	mustStatus(t, r, http.StatusTooManyRequests)
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
}

func TestBusyDatabaseIs503(t *testing.T) {
	t.Parallel()
	if onPostgres() {
		t.Skip("holds SQLite's write lock from another connection; on PostgreSQL the 503 is the restart fault's (TestPostgresRestart in the root package)")
	}
	b := newBundle(t, func(s *setup) { s.busyTimeout = 50 * time.Millisecond })
	_, token := b.signup("kim")
	// Another process holds the write lock past the busy timeout. It
	// waits for the lock as a real one would: onebox's own checkpointer
	// may hold it for a moment.
	db, err := sql.Open("sqlite", "file:"+b.dbPath+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	r := b.do("PATCH", "/v1/users/me", `{"bio":"x"}`, bearer(token)...)
	mustStatus(t, r, http.StatusServiceUnavailable)
	if r.Header.Get("Retry-After") == "" || r.json(t)["type"] != "/problems/busy" {
		t.Fatalf("busy answer %v %s", r.Header, r.body)
	}
	_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
	mustStatus(t, b.do("PATCH", "/v1/users/me", `{"bio":"x"}`, bearer(token)...), http.StatusOK)
}

// panicking is a real store whose profile read panics, to exercise the
// recovery middleware.
type panicking struct{ store.Store }

func (panicking) ListUsers(context.Context, store.ListUsersParams) ([]store.User, error) {
	panic("boom")
}

func TestPanicIs500Problem(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) {
		s.wrapStore = func(st store.Store) store.Store { return panicking{st} }
	})
	r := b.do("GET", "/v1/users", "")
	mustStatus(t, r, http.StatusInternalServerError)
	if r.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("content type %q", r.Header.Get("Content-Type"))
	}
	if logs := b.logs.String(); !strings.Contains(logs, `"panic":"boom"`) || !strings.Contains(logs, "goroutine") {
		t.Fatalf("panic not logged with its stack:\n%s", logs)
	}
	mustStatus(t, b.do("GET", "/health/live", ""), http.StatusOK) // still serving
	// The dashboard's recent errors have it, with its request id.
	id := r.Header.Get("X-Request-ID")
	errs := b.errors.Recent()
	if len(errs) != 1 || errs[0].Status != 500 || errs[0].RequestID != id || errs[0].Route != "GET /v1/users" || !strings.Contains(errs[0].Message, "boom") {
		t.Fatalf("recent errors %+v, want the 500 of request %s", errs, id)
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	if got := b.do("GET", "/health/live", "", "X-Request-ID", "abc-123").Header.Get("X-Request-ID"); got != "abc-123" {
		t.Fatalf("incoming id not echoed: %q", got)
	}
	got := b.do("GET", "/health/live", "", "X-Request-ID", "bad id {").Header.Get("X-Request-ID")
	if got == "" || strings.ContainsAny(got, " {") {
		t.Fatalf("unsafe id kept: %q", got)
	}
}

// TestNoSecretsInLogs runs requests that carry passwords and tokens, and
// jobs, with every log on: the access log, the slow-query log (every
// query is slow) and the jobs' lines at debug level. None may show a
// secret; the job lines name the request that enqueued the job.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) {
		s.metrics, s.tracing, s.slowQuery, s.logLevel = true, true, time.Nanosecond, slog.LevelDebug
	})
	_, token := b.signup("liam")
	b.do("PATCH", "/v1/users/me", `{"bio":"x"}`, bearer(token)...)
	b.do("PUT", "/v1/users/me/password", `{"current_password":"correct horse","new_password":"battery staple"}`, bearer(token)...)
	b.do("POST", "/v1/sessions", `{"handle":"liam","password":"wrong wrong wrong"}`)
	token = b.login("liam", "battery staple")
	up := b.uploadBytes(token, smallPNG(t), false)
	mustStatus(t, up, http.StatusAccepted)
	photo := up.json(t)["id"].(string)
	b.waitPhoto(token, photo)
	del := b.do("DELETE", "/v1/photos/"+photo, "", bearer(token)...)
	mustStatus(t, del, http.StatusNoContent)
	waitFor(t, func() bool { return strings.Contains(b.logs.String(), `"kind":"media.delete"`) })
	b.slow.Wait()

	logs := b.logs.String()
	for _, want := range []string{`"route":"/v1/users/me/password"`, `"msg":"slow query"`, `"query":"users_set_password"`, `"msg":"photo finished"`} {
		if !strings.Contains(logs, want) {
			t.Fatalf("no %s in the logs:\n%s", want, logs)
		}
	}
	for _, secret := range []string{"correct horse", "battery staple", "wrong wrong wrong", token, auth.HashToken(token), "argon2id", "Bearer"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains %q", secret)
		}
	}
	// Every job line names the request that enqueued it, the job, its
	// kind and its attempt.
	jobLines := 0
	for line := range strings.Lines(logs) {
		if !strings.Contains(line, `"job_id"`) {
			continue
		}
		jobLines++
		m := logLine(t, line)
		enqueuedBy := map[any]string{photos.KindProcess: up.Header.Get("X-Request-ID"), photos.KindCleanup: del.Header.Get("X-Request-ID")}
		if want, ok := enqueuedBy[m["kind"]]; !ok || m["request_id"] != want || m["job_id"] == "" || m["attempt"] != float64(1) {
			t.Errorf("job line %s: want request_id %q, job_id, kind and attempt", line, want)
		}
	}
	if jobLines < 3 { // photo finished, and done for each job
		t.Errorf("%d job lines:\n%s", jobLines, logs)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within a minute")
		}
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	r := b.do("GET", "/health/ready", "")
	mustStatus(t, r, http.StatusOK)
	if r.json(t)["checks"].(map[string]any)["database"] != "ok" {
		t.Fatalf("ready body %s", r.body)
	}
	b.health.Drain()
	r = b.do("GET", "/health/ready", "")
	mustStatus(t, r, http.StatusServiceUnavailable)
	if r.json(t)["status"] != "draining" {
		t.Fatalf("draining body %s", r.body)
	}
	mustStatus(t, b.do("GET", "/health/live", ""), http.StatusOK)
}

// Every API answer, success or problem, tells browsers not to sniff it,
// run it or frame it.
func TestAPISecurityHeaders(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	id, _ := b.signup("alice")
	for _, path := range []string{"/v1/users/" + id, "/v1/users/not-an-id", "/health/live", "/no/such/route"} {
		h := b.do("GET", path, "").Header
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Content-Security-Policy") != "default-src 'none'; frame-ancestors 'none'" {
			t.Errorf("GET %s: headers %v", path, h)
		}
	}
}

// deleteFails is the memory cache with Delete failing while down is set,
// as a shared cache's would while it is away.
type deleteFails struct {
	cache.Cache
	down *atomic.Bool
}

func (d deleteFails) Delete(ctx context.Context, key string) error {
	if d.down.Load() {
		return errors.New("connection refused")
	}
	return d.Cache.Delete(ctx, key)
}

// TestStaleCacheIs503: a write that committed but could not invalidate
// its cache entry answers 503 with Retry-After (send it again), not 500;
// the write is saved, and sending it again once the cache is back
// invalidates the entry.
func TestStaleCacheIs503(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	b := newBundle(t, func(s *setup) {
		s.wrapCache = func(c cache.Cache) cache.Cache { return deleteFails{c, &down} }
	})
	id, token := b.signup("stale")
	mustStatus(t, b.do("GET", "/v1/users/"+id, ""), http.StatusOK) // cached
	down.Store(true)
	patch := func() response {
		return b.do("PATCH", "/v1/users/me", `{"bio":"new"}`, append(bearer(token), "Content-Type", "application/json")...)
	}
	r := patch()
	mustStatus(t, r, http.StatusServiceUnavailable)
	if m := r.json(t); m["type"] != "/problems/cache-unavailable" || r.Header.Get("Retry-After") != "1" {
		t.Fatalf("problem %v, Retry-After %q", m, r.Header.Get("Retry-After"))
	}
	if m := b.do("GET", "/v1/users/me", "", bearer(token)...).json(t); m["bio"] != "new" {
		t.Fatalf("the write was not saved: %v", m)
	}
	down.Store(false)
	mustStatus(t, patch(), http.StatusOK)
	if m := b.do("GET", "/v1/users/"+id, "").json(t); m["bio"] != "new" {
		t.Fatalf("the public profile after the retry: %v", m)
	}
}
