package app_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"onebox/ops/metrics"
	"onebox/ops/tracing"
	"onebox/photos"
	"onebox/ratelimit"
)

// smallPNG is a 64×64 gradient, enough for the whole photo pipeline.
func smallPNG(t testing.TB) []byte { return shadedPNG(t, 128) }

// shadedPNG is a 64×64 gradient PNG whose blue channel is shade: different
// shades are different files.
func shadedPNG(t testing.TB, shade uint8) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for y := range 64 {
		for x := range 64 {
			img.Set(x, y, color.RGBA{uint8(4 * x), uint8(4 * y), shade, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// traffic sends requests that touch every metric: the API, a cache miss
// and hit per cache, an unmatched route, a wrong method, a rate-limit
// rejection, an upload through the whole pipeline and an event stream.
// It returns the upload's request id; the stream stays open until the
// test ends.
func (b *bundle) traffic(t *testing.T) (uploadRequestID string) {
	t.Helper()
	id, token := b.signup("mia")
	for range 2 {
		mustStatus(t, b.do("GET", "/v1/users/"+id, ""), http.StatusOK)
		mustStatus(t, b.do("GET", "/v1/users/me", "", bearer(token)...), http.StatusOK)
	}
	mustStatus(t, b.do("GET", "/v1/nothing", ""), http.StatusNotFound)
	mustStatus(t, b.do("PUT", "/v1/users", ""), http.StatusMethodNotAllowed)
	mustStatus(t, b.do("BREW", "/v1/users", ""), http.StatusMethodNotAllowed)
	mustStatus(t, b.do("POST", "/v1/sessions", `{"handle":"mia","password":"correct horse"}`), http.StatusTooManyRequests)

	_, res := b.openStream(t.Context(), "/v1/users/me/events", token, "")
	mustStatus(t, response{Response: res}, http.StatusOK)

	r := b.uploadBytes(token, smallPNG(t), false)
	mustStatus(t, r, http.StatusAccepted)
	if ph := b.waitPhoto(token, r.json(t)["id"].(string)); ph["status"] != "ready" {
		t.Fatalf("photo %v", ph)
	}
	return r.Header.Get("X-Request-ID")
}

// observed is a bundle with metrics, tracing and the slow-query log on,
// and a login limit per handle of 1, so a second login is refused.
func observed(t *testing.T) *bundle {
	return newBundle(t, func(s *setup) {
		s.metrics, s.tracing, s.slowQuery = true, true, time.Nanosecond
		s.opts.Policies.AuthHandle = ratelimit.Policy{Name: "auth-handle", Limit: 1, Window: time.Hour}
	})
}

func (b *bundle) scrape(t *testing.T) string {
	t.Helper()
	b.metrics.SampleOnce(t.Context(), metrics.Sources{
		Queue: b.queue.Stats, DataDir: b.dataDir, DB: b.dbStats,
	})
	rec := b.adminCall("GET", "/metrics", "127.0.0.1:8081", "")
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	return rec.Body.String()
}

// logLine decodes one JSON log line.
func logLine(t *testing.T, line string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("log line %q: %v", line, err)
	}
	return m
}

// sample returns the value of one series of an exposition, "" if absent.
func sample(exposition, series string) string {
	for line := range strings.Lines(exposition) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			return v
		}
	}
	return ""
}

// TestMetrics scrapes /metrics after traffic, checks the series the
// dashboard reads, and lints the exposition with promtool.
func TestMetrics(t *testing.T) {
	t.Parallel()
	b := observed(t)
	b.traffic(t)
	// The photo reads as ready once the pipeline commits; the runner
	// counts the job done only after acknowledging it, a moment later.
	text := b.scrape(t)
	for deadline := time.Now().Add(30 * time.Second); sample(text, `onebox_jobs_done_total{kind="photo.process",outcome="ok"}`) != "1" && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		text = b.scrape(t)
	}

	names := []string{
		metrics.HTTPRequests, metrics.HTTPRequestDuration, metrics.HTTPRequestLatency, metrics.HTTPRequestsSlow, metrics.HTTPInFlight,
		metrics.RateLimitRequests, metrics.CacheRequests, metrics.CacheEvictions, metrics.CacheLoadDuration,
		metrics.JobsQueued, metrics.JobsInFlight, metrics.JobsDead, metrics.JobsOldestAge, metrics.JobsDone, metrics.JobDuration,
		metrics.DBQueryDuration, metrics.DBErrors, metrics.DBWriterWait, metrics.DBOpenConnections,
		metrics.PipelineStepDuration, metrics.SSEConnections, metrics.DiskFree, metrics.DiskSize,
	}
	for _, n := range names {
		if !strings.Contains(text, "\n# TYPE "+n+" ") {
			t.Errorf("no # TYPE line for %s", n)
		}
	}
	for series, want := range map[string]string{
		`onebox_http_requests_total{route="/v1/users/:id",method="GET",code="2xx"}`:           "2",
		`onebox_http_requests_total{route="unmatched",method="GET",code="4xx"}`:               "1",
		`onebox_http_requests_total{route="/v1/users",method="PUT",code="4xx"}`:               "1",
		`onebox_http_requests_total{route="/v1/users",method="other",code="4xx"}`:             "1",
		`onebox_http_request_duration_seconds_count{route="/v1/users/:id",method="GET"}`:      "2",
		`onebox_http_requests_slow_total{route="/v1/users/:id",method="GET",threshold="0.5"}`: "0",
		`onebox_http_request_latency_seconds_count{route="/v1/users/:id",method="GET"}`:       "2",
		`onebox_ratelimit_requests_total{policy="auth-handle",result="rejected"}`:             "1",
		`onebox_ratelimit_requests_total{policy="auth-handle",result="allowed"}`:              "1",
		`onebox_cache_requests_total{cache="profiles",result="hit"}`:                          "1",
		`onebox_cache_requests_total{cache="profiles",result="miss"}`:                         "1",
		`onebox_cache_load_duration_seconds_count{cache="profiles"}`:                          "1",
		`onebox_jobs_done_total{kind="photo.process",outcome="ok"}`:                           "1",
		`onebox_job_duration_seconds_count{kind="photo.process"}`:                             "1",
		`onebox_jobs_queued{kind="photo.process"}`:                                            "0",
		`onebox_pipeline_step_duration_seconds_count{step="decode"}`:                          "1",
		`onebox_pipeline_step_duration_seconds_count{step="publish"}`:                         "1",
		`onebox_db_query_duration_seconds_count{query="users_insert"}`:                        "1",
		`onebox_sse_connections`: "1",
		// This scrape itself is not in flight: /metrics is served by the
		// admin mux, not the API.
		`onebox_http_in_flight_requests`: "1", // the event stream
	} {
		if got := sample(text, series); got != want {
			t.Errorf("%s = %q, want %q", series, got, want)
		}
	}
	// SQLite has one writer connection; PostgreSQL's pool has up to its cap.
	if n, err := strconv.Atoi(sample(text, `onebox_db_open_connections{pool="writer"}`)); err != nil || n < 1 || n > b.maxWriters {
		t.Errorf(`onebox_db_open_connections{pool="writer"} = %d (%v), want 1 to %d`, n, err, b.maxWriters)
	}
	for _, q := range []string{"0.5", "0.95", "0.99"} {
		if sample(text, `onebox_http_request_latency_seconds{route="/v1/users/:id",method="GET",quantile="`+q+`"}`) == "" {
			t.Errorf("no %s quantile in the summary", q)
		}
	}
	if sample(text, metrics.DiskSize) == "0" || sample(text, "go_goroutines") == "" || sample(text, "process_resident_memory_bytes") == "" {
		t.Error("disk, Go runtime or process metrics missing")
	}
	if !regexp.MustCompile(`(?m)^onebox_db_query_duration_seconds_count\{query="users_by_id"\} \d+$`).MatchString(text) {
		t.Error("no users_by_id query duration")
	}
	promtool(t, text)
}

// promtool feeds an exposition to `promtool check metrics`: it must
// parse, and onebox's own metrics may draw no finding but "no help
// text". The Go and process metrics are the library's.
func promtool(t *testing.T, text string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found; .ci/run installs it")
		}
		t.Skip("promtool not found (Debian package prometheus); skipping the lint")
	}
	cmd := exec.CommandContext(t.Context(), bin, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return
	case errors.As(err, &exit) && exit.ExitCode() == 3: // lint findings, listed below
	default:
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "onebox_") && !strings.HasSuffix(line, " no help text") {
			t.Errorf("promtool: %s", line)
		}
	}
}

// TestTracing: a request's span tree is kept with its cache load, its
// queries and its enqueue; the job's trace links back to the request
// that enqueued it and carries its request id.
func TestTracing(t *testing.T) {
	t.Parallel()
	b := observed(t)
	uploadID := b.traffic(t)

	traces := b.tracing.Slowest()
	byName := map[string]tracing.TraceSummary{}
	for _, tr := range traces {
		if _, ok := byName[tr.Name]; !ok {
			byName[tr.Name] = tr
		}
	}
	spanNames := func(tr tracing.TraceSummary) []string {
		var ns []string
		for _, s := range tr.Spans {
			ns = append(ns, s.Name)
		}
		return ns
	}
	upload, ok := byName["POST /v1/photos"]
	if !ok || upload.Kind != "request" || upload.RequestID != uploadID {
		t.Fatalf("no upload trace with request id %s in %v", uploadID, names(traces))
	}
	ns := spanNames(upload)
	if i := slices.Index(ns, "enqueue "+photos.KindProcess); i < 0 || !slices.Contains(ns[i:], "db jobs_send") {
		t.Errorf("upload spans %v: want the enqueue span with the job's insert under it", ns)
	}
	for _, s := range upload.Spans[1:] {
		if s.Depth < 1 || s.ParentID == "" || s.Duration < 0 || s.Offset < 0 {
			t.Errorf("upload span %+v", s)
		}
	}

	job, ok := byName["job "+photos.KindProcess]
	if !ok || job.Kind != "job" || job.LinkedTraceID != upload.TraceID || job.RequestID != uploadID {
		t.Fatalf("job trace %+v: want it linked to the upload's trace %s, request %s", job, upload.TraceID, uploadID)
	}
	for _, want := range []string{"pipeline.decode", "pipeline.variants", "pipeline.publish", "db photos_finish_commit"} {
		if !slices.Contains(spanNames(job), want) {
			t.Errorf("job spans %v: no %s", spanNames(job), want)
		}
	}

	// Of the two profile reads the first misses: its trace holds the
	// cache load and the query. Which of the two is slower is the
	// machine's business, so look at every one.
	missed := slices.ContainsFunc(traces, func(tr tracing.TraceSummary) bool {
		ns := spanNames(tr)
		return tr.Name == "GET /v1/users/:id" && slices.Contains(ns, "cache.load profiles") && slices.Contains(ns, "db users_by_id")
	})
	if !missed {
		t.Errorf("no profile read with its cache load and query in %v", names(traces))
	}
	if _, ok := byName["GET /v1/users/me/events"]; ok {
		t.Error("an event stream was traced: it would crowd out the slowest requests")
	}
}

// TestTraceParent: a request that carries a W3C traceparent (a proxy's,
// another service's) continues that trace, and one without starts its own.
func TestTraceParent(t *testing.T) {
	t.Parallel()
	b := observed(t)
	id, _ := b.signup("noa")
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	with := b.do("GET", "/v1/users/"+id, "", "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	without := b.do("GET", "/v1/users/"+id, "")
	mustStatus(t, with, http.StatusOK)
	mustStatus(t, without, http.StatusOK)
	traces := map[string]string{} // request id → trace id, from the access log
	for l := range strings.Lines(b.logs.String()) {
		if strings.Contains(l, `"msg":"request"`) {
			line := logLine(t, l)
			traces[line["request_id"].(string)], _ = line["trace_id"].(string)
		}
	}
	if got := traces[with.Header.Get("X-Request-ID")]; got != traceID {
		t.Errorf("with a traceparent: trace %q, want the caller's %s", got, traceID)
	}
	if got := traces[without.Header.Get("X-Request-ID")]; got == "" || got == traceID {
		t.Errorf("without a traceparent: trace %q, want a new one", got)
	}
}

func names(traces []tracing.TraceSummary) []string {
	var ns []string
	for _, tr := range traces {
		ns = append(ns, tr.Name)
	}
	return ns
}

// planSearchesUsers tells whether plan, SQLite's or PostgreSQL's EXPLAIN,
// reads the users table through an index ("SEARCH users USING INTEGER
// PRIMARY KEY", "Index Scan using users_pkey on users").
func planSearchesUsers(plan string) bool {
	p := strings.ToLower(plan)
	return strings.Contains(p, "users") && strings.Contains(p, "using")
}

// TestSlowQueryLog: with a threshold of 1ns every query is slow; each
// name is logged once (the rest are rate-limited) with its SQL, plan and
// request id, and the recent ones are kept for the dashboard.
func TestSlowQueryLog(t *testing.T) {
	t.Parallel()
	b := observed(t)
	_, token := b.signup("noa")
	r := b.do("GET", "/v1/users/me", "", bearer(token)...)
	mustStatus(t, r, http.StatusOK)
	b.do("GET", "/v1/users/me", "", bearer(token)...)
	b.slow.Wait()

	var line map[string]any
	n := 0
	for l := range strings.Lines(b.logs.String()) {
		if strings.Contains(l, `"msg":"slow query"`) && strings.Contains(l, `"query":"users_by_id"`) {
			n++
			line = logLine(t, l)
		}
	}
	if n != 1 {
		t.Fatalf("%d slow-query lines for users_by_id, want 1 (rate-limited)", n)
	}
	if line["level"] != "WARN" || line["request_id"] != r.Header.Get("X-Request-ID") ||
		!strings.HasPrefix(strings.ToUpper(line["sql"].(string)), "SELECT") || !planSearchesUsers(line["plan"].(string)) {
		t.Errorf("slow-query line %v", line)
	}
	recent := b.slow.Recent()
	if len(recent) == 0 || recent[0].Time.Before(recent[len(recent)-1].Time) {
		t.Fatalf("recent slow queries %+v: want newest first", recent)
	}
	for _, q := range recent {
		if q.Name == "users_by_id" && q.Plan == "" {
			t.Errorf("recent %+v has no plan", q)
		}
	}
}

// BenchmarkObserve measures the cost of metrics and tracing on the
// hottest path, a cached profile read, through the whole middleware
// chain, against both off (a nil Metrics and Tracing). cpu-ns/op is the
// number to compare; the request and recorder of httptest are part of
// every variant.
//
//	go test ./app -run '^$' -bench Observe -benchmem -count 5
func BenchmarkObserve(b *testing.B) {
	for _, bc := range []struct {
		name             string
		metrics, tracing bool
	}{{"off", false, false}, {"metrics", true, false}, {"tracing", false, true}, {"both", true, true}} {
		b.Run(bc.name, func(b *testing.B) {
			bd := newBundle(b, func(s *setup) {
				s.noWorkers = true
				s.opts.AccessLog = false // its buffer would grow with b.N
				s.metrics, s.tracing = bc.metrics, bc.tracing
			})
			benchProfileRead(b, bd)
		})
	}
}

// BenchmarkProfileRead is GET /v1/users/{id} through every production
// middleware (metrics, tracing, access log as JSON to io.Discard), from
// the cache and with the cache off, so a change to the read path can be
// weighed without wrk and the kernel's share of a loopback request.
//
//	go test ./app -run '^$' -bench ProfileRead -benchmem -count 6
func BenchmarkProfileRead(b *testing.B) {
	for _, bc := range []struct {
		name    string
		noCache bool
	}{{"cached", false}, {"uncached", true}} {
		b.Run(bc.name, func(b *testing.B) {
			bd := newBundle(b, func(s *setup) {
				s.noWorkers, s.discardLogs, s.noCache = true, true, bc.noCache
				s.metrics, s.tracing = true, true
			})
			benchProfileRead(b, bd)
		})
	}
}

// benchProfileRead signs a user up, reads the profile once (cached from
// then on, if there is a cache) and then in parallel for b.N reads. It
// reports cpu-ns/op: CPU time, unlike ns/op, holds on a machine that is
// busy with other work.
func benchProfileRead(b *testing.B, bd *bundle) {
	id, _ := bd.signup("bench")
	bd.handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/users/"+id, nil))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			bd.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/users/"+id, nil))
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}
