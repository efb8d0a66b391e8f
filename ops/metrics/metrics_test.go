package metrics_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"onebox/jobs"
	"onebox/ops/metrics"
	"onebox/store"
)

func expose(m *metrics.Metrics) string {
	var b bytes.Buffer
	m.WritePrometheus(&b)
	return b.String()
}

func mustHave(t *testing.T, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(text, "\n"+l+"\n") {
			t.Errorf("no line %q", l)
		}
	}
}

func TestRouteSeries(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{})
	r := m.Route("GET", "/v1/users/:id")
	r.Observe(200, 2*time.Millisecond)
	r.Observe(304, time.Millisecond)
	r.Observe(503, time.Second)
	m.Route("GET", metrics.Unmatched).Observe(404, time.Millisecond)
	m.Route("GET", `/odd"path`).Observe(999, time.Millisecond) // escaped; an odd status is "other"
	text := expose(m)
	mustHave(t, text,
		`onebox_http_requests_total{route="/v1/users/:id",method="GET",code="2xx"} 1`,
		`onebox_http_requests_total{route="/v1/users/:id",method="GET",code="3xx"} 1`,
		`onebox_http_requests_total{route="/v1/users/:id",method="GET",code="5xx"} 1`,
		`onebox_http_requests_total{route="unmatched",method="GET",code="4xx"} 1`,
		`onebox_http_requests_total{route="/odd\"path",method="GET",code="other"} 1`,
		`onebox_http_request_duration_seconds_bucket{route="/v1/users/:id",method="GET",vmrange="1.896e-03...2.154e-03"} 1`,
		`onebox_http_request_duration_seconds_bucket{route="/v1/users/:id",method="GET",vmrange="8.799e-01...1.000e+00"} 1`,
		`onebox_http_request_duration_seconds_count{route="/v1/users/:id",method="GET"} 3`,
		`onebox_http_request_latency_seconds_count{route="/v1/users/:id",method="GET"} 3`,
		`onebox_http_requests_slow_total{route="/v1/users/:id",method="GET",threshold="0.5"} 1`,
		`# TYPE onebox_http_request_latency_seconds summary`,
		`# TYPE onebox_http_requests_total counter`,
	)
	if strings.Contains(text, `route="/v1/users/me"`) {
		t.Error("a route with no request has series")
	}
}

// TestSlowRequests checks the slow counter's bound: a request at the
// threshold is not slower than it, one a microsecond over is.
func TestSlowRequests(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{SlowRequest: 250 * time.Millisecond})
	r := m.Route("GET", "/v1/users/:id")
	r.Observe(200, 250*time.Millisecond)
	r.Observe(200, 250*time.Millisecond+time.Microsecond)
	r.Observe(500, 3*time.Second)
	r.Observe(200, time.Millisecond)
	mustHave(t, expose(m),
		`onebox_http_requests_slow_total{route="/v1/users/:id",method="GET",threshold="0.25"} 2`,
		`onebox_http_requests_total{route="/v1/users/:id",method="GET",code="2xx"} 3`,
	)
}

func TestJobsQueriesAndCaches(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{Kinds: []string{"photo.process"}})
	m.JobDone("photo.process", time.Second, "ok")
	m.JobDone("photo.process", time.Second, "retry")
	m.JobDone("stray", 0, "dead") // no handler: swept, never ran
	m.JobAbandoned("photo.process", 1)
	m.JobAbandoned("photo.process", 1)
	m.JobAbandoned("photo.process", -1)
	m.JobLeaseLost("photo.process")
	m.JobLeaseLost("stray")
	m.QueueStats(jobs.Stats{Kinds: map[string]jobs.KindStats{
		"photo.process": {Queued: 3, InFlight: 1, Dead: 2, OldestAge: 90 * time.Second},
		"stray":         {Queued: 4},
		"other-stray":   {Queued: 1, OldestAge: time.Minute},
	}})
	ctx := context.Background()
	m.Query(ctx, store.QueryEvent{Name: "users_by_id", Duration: time.Millisecond})
	m.Query(ctx, store.QueryEvent{Name: "users_by_id", Duration: time.Millisecond, Err: store.ErrNotFound})
	m.Query(ctx, store.QueryEvent{Name: "users_update", Duration: time.Second, Err: fmt.Errorf("sqlite: %w", store.ErrBusy)})
	m.Query(ctx, store.QueryEvent{Name: "users_update", Duration: time.Second, Err: context.Canceled})
	c := m.Cache("profiles")
	c.Lookup(true)
	c.Lookup(false)
	c.Load(3*time.Millisecond, nil)
	m.Cache("profiles").Evicted()
	m.RateLimit("api", "10.0.0.1", true)
	m.RateLimit("api", "10.0.0.1", false)
	m.RateLimitFailed("api")
	m.PipelineStep(ctx, "decode", time.Second)
	m.PipelineStep(ctx, "unknown", time.Second)
	m.InFlight(1)
	m.SSE(1)
	m.SSE(1)
	m.SSE(-1)
	text := expose(m)
	mustHave(t, text,
		`onebox_jobs_done_total{kind="photo.process",outcome="ok"} 1`,
		`onebox_jobs_done_total{kind="photo.process",outcome="retry"} 1`,
		`onebox_jobs_done_total{kind="other",outcome="dead"} 1`,
		`onebox_job_duration_seconds_count{kind="photo.process"} 2`,
		`onebox_jobs_queued{kind="photo.process"} 3`,
		`onebox_jobs_abandoned{kind="photo.process"} 1`,
		`onebox_jobs_lease_lost_total{kind="photo.process"} 1`,
		`onebox_jobs_lease_lost_total{kind="other"} 1`,
		`onebox_jobs_in_flight{kind="photo.process"} 1`,
		`onebox_jobs_dead{kind="photo.process"} 2`,
		`onebox_jobs_oldest_age_seconds{kind="photo.process"} 90`,
		`onebox_jobs_queued{kind="other"} 5`,
		`onebox_jobs_oldest_age_seconds{kind="other"} 60`,
		`onebox_db_query_duration_seconds_count{query="users_by_id"} 2`,
		`onebox_db_errors_total{query="users_by_id",kind="other"} 0`,
		`onebox_db_errors_total{query="users_update",kind="busy"} 1`,
		`onebox_db_errors_total{query="users_update",kind="other"} 1`,
		`onebox_cache_requests_total{cache="profiles",result="hit"} 1`,
		`onebox_cache_requests_total{cache="profiles",result="miss"} 1`,
		`onebox_cache_evictions_total{cache="profiles"} 1`,
		`onebox_cache_load_duration_seconds_count{cache="profiles"} 1`,
		`onebox_ratelimit_requests_total{policy="api",result="allowed"} 1`,
		`onebox_ratelimit_requests_total{policy="api",result="rejected"} 1`,
		`onebox_ratelimit_requests_total{policy="api",result="error"} 1`,
		`onebox_pipeline_step_duration_seconds_count{step="decode"} 1`,
		`onebox_http_in_flight_requests 1`,
		`onebox_sse_connections 1`,
	)
	if strings.Contains(text, "unknown") || strings.Contains(text, `kind="stray"`) {
		t.Error("a label value outside its closed set")
	}
}

func TestSample(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{Kinds: []string{"k"}, Workers: map[string]int{"k": 3}})
	m.SampleOnce(context.Background(), metrics.Sources{
		Queue: func(context.Context) (jobs.Stats, error) {
			return jobs.Stats{Kinds: map[string]jobs.KindStats{"k": {Queued: 7}}}, nil
		},
		DB: func() metrics.DBStats {
			return metrics.DBStats{Backend: "sqlite", WriterOpen: 1, ReaderOpen: 4, WriterWait: 1500 * time.Millisecond, ReaderWait: 250 * time.Millisecond, WriterBusy: 2 * time.Second,
				Replicas: []metrics.ReplicaStats{{Name: "r1:5432", InRotation: true, LagBytes: 4096, LagSeconds: 0.25}, {Name: "r2:5432", LagBytes: 1 << 30}}}
		},
		DataDir: t.TempDir(),
	})
	text := expose(m)
	mustHave(t, text,
		`onebox_jobs_queued{kind="k"} 7`,
		`onebox_db_open_connections{pool="writer"} 1`,
		`onebox_db_open_connections{pool="reader"} 4`,
		`onebox_db_replica_lag_bytes{replica="r1:5432"} 4096`,
		`onebox_db_replica_lag_seconds{replica="r1:5432"} 0.25`,
		`onebox_db_replica_in_rotation{replica="r1:5432"} 1`,
		`onebox_db_replica_lag_bytes{replica="r2:5432"} 1073741824`,
		`onebox_db_replica_in_rotation{replica="r2:5432"} 0`,
		`onebox_db_writer_wait_seconds_total 1.5`,
		`# TYPE onebox_db_writer_wait_seconds_total counter`,
		`onebox_db_reader_wait_seconds_total 0.25`,
		`# TYPE onebox_db_reader_wait_seconds_total counter`,
		`onebox_db_writer_busy_seconds_total 2`,
		`onebox_db_backend_info{backend="sqlite"} 1`,
		`onebox_jobs_workers{kind="k"} 3`,
		`onebox_jobs_workers{kind="other"} 0`,
	)
	if strings.Contains(text, "\nonebox_disk_size_bytes 0\n") || !strings.Contains(text, "\nonebox_disk_free_bytes ") {
		t.Error("disk not sampled")
	}
	if !strings.Contains(text, "\ngo_goroutines ") || !strings.Contains(text, "\nprocess_cpu_seconds_total ") {
		t.Error("no Go runtime or process metrics")
	}
}

// TestTopRejectedKeys: one client rejected far more than a crowd of
// others comes first, with every one of its rejections counted, and no
// policy exposes more than TopRejectedKeys keys however many clients.
func TestTopRejectedKeys(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{})
	for i := range 2000 {
		m.RateLimit("login", fmt.Sprintf("10.1.%d.%d", i/256, i%256), false)
		if i%4 == 0 {
			m.RateLimit("login", "203.0.113.9", false)
		}
		m.RateLimit("login", "198.51.100.1", true) // allowed: never a top rejected key
	}
	m.RateLimit("api", "u1", false)
	text := expose(m)
	mustHave(t, text,
		`onebox_ratelimit_rejected_top{policy="login",key="203.0.113.9"} 500`,
		`onebox_ratelimit_rejected_top{policy="api",key="u1"} 1`,
		`# TYPE onebox_ratelimit_rejected_top gauge`,
	)
	n := strings.Count(text, `onebox_ratelimit_rejected_top{policy="login"`)
	if n != metrics.TopRejectedKeys || strings.Contains(text, "198.51.100.1") {
		t.Errorf("%d login keys exposed (want %d), or an allowed key among them:\n%s", n, metrics.TopRejectedKeys, text)
	}
	first := strings.Index(text, `onebox_ratelimit_rejected_top{policy="login"`)
	if !strings.HasPrefix(text[first:], `onebox_ratelimit_rejected_top{policy="login",key="203.0.113.9"}`) {
		t.Errorf("the most rejected key is not first:\n%s", text[first:])
	}
}

// TestOff: a nil Metrics takes every call and serves 404.
func TestOff(t *testing.T) {
	t.Parallel()
	var m *metrics.Metrics
	m.Route("GET", "/").Observe(200, time.Second)
	m.Cache("profiles").Lookup(true)
	m.Cache("profiles").Evicted()
	m.JobDone("k", time.Second, "ok")
	m.Query(context.Background(), store.QueryEvent{})
	m.InFlight(1)
	m.SampleOnce(context.Background(), metrics.Sources{DataDir: "."})
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("status %d", rec.Code)
	}
}

// BenchmarkRoute is the request path's cost with metrics on: a counter,
// a histogram and a summary.
func BenchmarkRoute(b *testing.B) {
	m := metrics.New(metrics.Options{})
	r := m.Route("GET", "/v1/users/:id")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.InFlight(1)
			r.Observe(200, 150*time.Microsecond)
			m.InFlight(-1)
		}
	})
}

// TestTopRejectedKeysLateHeavyHitter: a key that starts being rejected
// only after the sketch is full of others still ends first, counted at
// least as often as it was rejected (space-saving overestimates, never
// under): it enters at the evicted key's count plus one.
func TestTopRejectedKeysLateHeavyHitter(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{})
	fresh := 0
	reject := func() { m.RateLimit("login", fmt.Sprintf("10.2.%d.%d", fresh/256, fresh%256), false); fresh++ }
	for range 1000 {
		reject()
	}
	// "0…" sorts before the others: a tie with them evicts it first.
	for range 1000 {
		m.RateLimit("login", "0.0.0.1", false)
		reject()
		reject()
	}
	text := expose(m)
	first := strings.Index(text, `onebox_ratelimit_rejected_top{policy="login"`)
	line, _, _ := strings.Cut(text[first:], "\n")
	var n int
	if _, err := fmt.Sscanf(line, `onebox_ratelimit_rejected_top{policy="login",key="0.0.0.1"} %d`, &n); err != nil || n < 1000 {
		t.Fatalf("the late heavy key is not first with at least its 1000 rejections: %q (%v)", line, err)
	}
}

// TestBackupVerify: the interval is there on an instance that would
// verify; the age only while it runs the schedule, the result and restore
// time once one ended; they go when it gives the schedule up.
func TestBackupVerify(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{})
	if text := expose(m); strings.Contains(text, "onebox_backup_verify") {
		t.Fatalf("series without a schedule:\n%s", text)
	}
	m.BackupVerifySchedule(time.Hour)
	text := expose(m)
	mustHave(t, text, "onebox_backup_verify_interval_seconds 3600")
	if strings.Contains(text, "onebox_backup_verify_age_seconds") {
		t.Errorf("an age before this instance runs the schedule:\n%s", text)
	}
	m.BackupVerifyRunning(true)
	text = expose(m)
	if !strings.Contains(text, "\nonebox_backup_verify_age_seconds ") || strings.Contains(text, "onebox_backup_verify_ok") {
		t.Errorf("before the first result, want the age and no result:\n%s", text)
	}
	m.BackupVerified(false, 1500*time.Millisecond)
	mustHave(t, expose(m), "onebox_backup_verify_ok 0", "onebox_backup_verify_restore_seconds 1.5")
	m.BackupVerified(true, 250*time.Millisecond)
	mustHave(t, expose(m), "onebox_backup_verify_ok 1", "onebox_backup_verify_restore_seconds 0.25")
	m.BackupVerifyRunning(false)
	text = expose(m)
	if strings.Contains(text, "onebox_backup_verify_ok") || strings.Contains(text, "onebox_backup_verify_age") {
		t.Errorf("series after the schedule was given up:\n%s", text)
	}
	mustHave(t, text, "onebox_backup_verify_interval_seconds 3600")
	// Taken on again (the lease came back): no result until a new one.
	m.BackupVerifyRunning(true)
	if text := expose(m); strings.Contains(text, "onebox_backup_verify_ok") {
		t.Errorf("an old result came back with the schedule:\n%s", text)
	}
	var nilMetrics *metrics.Metrics // metrics off: no panic
	nilMetrics.BackupVerifySchedule(time.Hour)
	nilMetrics.BackupVerifyRunning(true)
	nilMetrics.BackupVerified(true, time.Second)
}

// The writer's holds are series per holder and query; the hold in
// progress, other processes' locks and the WAL come from the sample.
func TestWriterSeries(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{})
	m.WriterHold(metrics.WriterHold{Query: "hold_writer", OnBehalfOf: "job drill.hold_writer", Held: 2 * time.Second, Queued: 3})
	m.WriterHold(metrics.WriterHold{Query: "users_update", OnBehalfOf: "PATCH /v1/users/me", Waited: 1500 * time.Millisecond, Held: time.Millisecond})
	m.WriterHold(metrics.WriterHold{Query: "migrate", Held: time.Millisecond, Foreign: 250 * time.Millisecond})
	now := time.Now()
	m.SampleOnce(t.Context(), metrics.Sources{DB: func() metrics.DBStats {
		return metrics.DBStats{
			Backend:       "sqlite",
			WriterHolder:  metrics.WriterHolder{Query: "hold_writer", OnBehalfOf: "job drill.hold_writer", Since: now.Add(-3 * time.Second)},
			WriterWaiting: 4, Busy: 2,
			FileLocks: []metrics.FileLock{{Lock: "write", Exclusive: true, PID: 42, Process: "litestream"}},
			WAL: &metrics.WALStats{Bytes: 1 << 20, MaxBytes: 64 << 20, LastMode: "passive", LastResult: "ok", LastAt: now,
				Counts: map[string]int64{"passive/ok": 7, "truncate/busy": 1}},
		}
	}})
	text := expose(m)
	mustHave(t, text,
		`onebox_db_writer_hold_seconds_sum{holder="job drill.hold_writer",query="hold_writer"} 2`,
		`onebox_db_writer_hold_seconds_count{holder="internal",query="migrate"} 1`,
		`onebox_db_writer_blocked_total{holder="job drill.hold_writer",query="hold_writer"} 3`,
		`onebox_db_writer_waited_seconds_total{holder="PATCH /v1/users/me"} 1.5`,
		`onebox_db_writer_other_process_seconds_total 0.25`,
		`onebox_db_writer_waiting 4`,
		`onebox_db_sqlite_busy_total 2`,
		`onebox_db_file_lock{lock="write",process="litestream",pid="42"} 1`,
		`onebox_db_wal_bytes 1048576`,
		`onebox_db_wal_max_bytes 67108864`,
		`onebox_db_checkpoints_total{mode="passive",result="ok"} 7`,
		`onebox_db_checkpoints_total{mode="truncate",result="busy"} 1`,
		`onebox_db_checkpoint_last_ok 1`,
	)
	if !strings.Contains(text, `onebox_db_writer_holding_seconds{holder="job drill.hold_writer",query="hold_writer",state="running"} 3`) {
		t.Errorf("no hold in progress of 3s in:\n%s", grepLines(text, "holding"))
	}
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
