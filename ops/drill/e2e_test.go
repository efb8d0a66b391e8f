package drill_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"onebox/app"
	"onebox/auth"
	cachememory "onebox/cache/memory"
	"onebox/internal/testimages"
	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
	medialocal "onebox/media/local"
	"onebox/moderation/phash"
	notifymemory "onebox/notify/memory"
	"onebox/ops"
	"onebox/ops/dashboard"
	"onebox/ops/drill"
	"onebox/ops/metrics"
	"onebox/photos"
	"onebox/pipeline"
	"onebox/ratelimit"
	limitmemory "onebox/ratelimit/memory"
	"onebox/store/sqlite"
)

// instance is the real API, its workers, metrics and dashboard on a
// fresh database, wired as main wires them with drills on.
type instance struct {
	api, admin string
}

func startInstance(t *testing.T) instance {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	log := slog.New(slog.DiscardHandler)
	// The alert's threshold is the dashboard's (250ms, below), and the
	// per-route summaries cover the last 10s: the test's whole drill.
	m := metrics.New(metrics.Options{
		Kinds:       []string{photos.KindProcess, photos.KindCleanup},
		SlowRequest: 250 * time.Millisecond, SummaryWindow: 10 * time.Second,
	})
	dr := drill.New(drill.Options{Logger: log})
	st, err := sqlite.New(ctx, sqlite.Options{Path: t.TempDir() + "/onebox.db", OnQuery: dr.ObserveQueries(m.Query)})
	if err != nil {
		t.Fatal(err)
	}
	slowed := dr.Store(st)
	queue := st.Queue(jobsqlite.Options{Logger: log})
	med, err := medialocal.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hub := notifymemory.New()
	pipe := pipeline.New(slowed, med, phash.New(nil, 0), hub, log, pipeline.Options{
		MaxPixels: 50_000_000, JPEGQuality: 80, DecodeMemory: 1 << 30, OnStep: m.PipelineStep,
	})
	runner := jobs.NewRunner(queue, jobs.RunnerOptions{
		Logger: log, PollInterval: 20 * time.Millisecond, MaxPollInterval: 100 * time.Millisecond, OnDone: m.JobDone,
	})
	runner.Register(photos.KindProcess, pipe.Process, jobs.KindOptions{Concurrency: 2, MaxAttempts: 3, Timeout: time.Minute})
	runner.Register(photos.KindCleanup, pipe.Cleanup, jobs.KindOptions{Concurrency: 1, MaxAttempts: 3})
	// Short windows, so the test takes seconds: the numbers are over the
	// last second, a request p95 over 250ms is slow, a queue rising for 2s
	// or a job waiting 1s is backed up.
	dash := dashboard.New(dashboard.Options{
		Scrape:   func(w io.Writer) error { m.WritePrometheus(w); return nil },
		Drill:    dr,
		Interval: 100 * time.Millisecond, Recent: time.Second, Window: 30 * time.Second, SummaryWindow: 10 * time.Second,
		Thresholds: dashboard.Thresholds{HTTPP95: 250 * time.Millisecond, QueueGrowth: 2 * time.Second, QueueOldest: time.Second},
		Alerts:     dashboard.AlertRules{P95: 250 * time.Millisecond, For: time.Second},
	})
	generous := func(name string) ratelimit.Policy {
		return ratelimit.Policy{Name: name, Limit: 1_000_000, Window: time.Second}
	}
	a := app.New(app.Deps{
		Store: slowed, Cache: cachememory.New(cachememory.Options{MaxBytes: 1 << 20}), Limiter: limitmemory.New(limitmemory.Options{}),
		Hasher: auth.NewHasher(auth.Params{Memory: 64, Time: 1, Threads: 1}, 4),
		Health: ops.NewHealth(), Logger: log, Media: med, Hub: hub, Queue: queue, Jobs: runner, Metrics: m,
		Ops: dash.Handler(),
	}, app.Options{
		CacheTTL: time.Minute, CacheNegativeTTL: 5 * time.Second, ProfileSMaxAge: 10 * time.Second,
		SessionTTL: time.Hour, RequestTimeout: 10 * time.Second, MaxBodyBytes: 4096,
		MaxUploadBytes: 8 << 20, MaxPixels: 50_000_000, UploadTimeout: time.Minute,
		Policies: app.Policies{API: generous("api"), Auth: generous("auth"), AuthHandle: generous("auth-handle"), Upload: generous("upload")},
	})
	api := httptest.NewServer(a.Handler())
	adm := httptest.NewServer(a.AdminHandler())
	var wg sync.WaitGroup
	wg.Go(func() { runner.Run(ctx) })
	wg.Go(func() { m.Sample(ctx, metrics.Sources{Queue: queue.Stats, Interval: 50 * time.Millisecond}) })
	wg.Go(func() { dash.Run(ctx) })
	t.Cleanup(func() {
		a.Close()
		api.Close()
		adm.Close()
		stop()
		wg.Wait()
		st.Close()
	})
	return instance{api: api.URL, admin: adm.URL}
}

// call does one request and returns the status and body; a transport
// error fails the test.
func call(t *testing.T, method, url, token, contentType string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// user signs up and logs in; it returns the id and a token.
func user(t *testing.T, base, handle string) (string, string) {
	t.Helper()
	creds := []byte(`{"handle":"` + handle + `","password":"correct horse"}`)
	code, b := call(t, "POST", base+"/v1/users", "", "application/json", creds)
	var u struct{ ID string }
	if code != http.StatusCreated || json.Unmarshal(b, &u) != nil {
		t.Fatalf("sign-up: %d %s", code, b)
	}
	code, b = call(t, "POST", base+"/v1/sessions", "", "application/json", creds)
	var s struct{ Token string }
	if code != http.StatusCreated || json.Unmarshal(b, &s) != nil {
		t.Fatalf("login: %d %s", code, b)
	}
	return u.ID, s.Token
}

// photo is a small JPEG of the repository's test corpus, enough for the
// whole photo pipeline.
func photo(t *testing.T) []byte {
	t.Helper()
	return testimages.Read(t, "formats/jpeg_baseline_testorig.jpg")
}

// TestDatabaseLatencyDrill runs a game day: under a steady load of
// profile reads, profile edits and uploads, the drill adds database
// latency, and the dashboard must name the database as the root cause,
// with HTTP and the queue suffering because of it.
func TestDatabaseLatencyDrill(t *testing.T) {
	t.Parallel()
	in := startInstance(t)
	jpeg := photo(t)
	type client struct{ id, token string }
	var clients []client
	for i := range 4 {
		id, token := user(t, in.api, fmt.Sprintf("user%d", i))
		clients = append(clients, client{id, token})
	}

	// The load: a bounded number of clients, each one request at a time.
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var load sync.WaitGroup
	defer func() { stopLoad(); load.Wait() }()
	for i, c := range clients {
		load.Go(func() { // profile reads, of every user
			for n := 0; loadCtx.Err() == nil; n++ {
				call(t, "GET", in.api+"/v1/users/"+clients[n%len(clients)].id, "", "", nil)
				call(t, "GET", in.api+"/v1/users/me", c.token, "", nil)
			}
		})
		load.Go(func() { // edits and uploads, at most four a second, which the workers keep up with
			pace := time.NewTicker(250 * time.Millisecond)
			defer pace.Stop()
			for n := 0; loadCtx.Err() == nil; n++ {
				select {
				case <-pace.C:
				case <-loadCtx.Done():
					return
				}
				call(t, "PATCH", in.api+"/v1/users/me", c.token, "application/merge-patch+json", fmt.Appendf(nil, `{"bio":"edit %d"}`, n))
				if code, b := call(t, "POST", in.api+"/v1/photos", c.token, "image/jpeg", jpeg); code != http.StatusAccepted && loadCtx.Err() == nil {
					t.Errorf("upload %d of client %d: %d %s", n, i, code, b)
					return
				}
			}
		})
	}

	// A baseline of normal traffic, until the dashboard has seen the
	// queries run normally for a while.
	waitDiagnosis(t, in, "a healthy baseline", func(d dashboard.Diagnosis) bool {
		healthy := func(comp string) bool {
			return slices.ContainsFunc(d.Chain, func(l dashboard.Link) bool { return l.Component == comp && l.State == dashboard.Healthy })
		}
		return d.Root == nil && healthy("http") && healthy("queue") && healthy("database")
	})
	// Then enough normal queries that each has a baseline to compare with.
	waitMetrics(t, in, map[string]float64{
		`onebox_db_query_duration_seconds_count{query="users_update"}`:  40,
		`onebox_db_query_duration_seconds_count{query="photos_finish"}`: 20,
	})

	if code, b := call(t, "POST", in.admin+"/ops/drill/db-latency?delay=300ms&for=60s", "", "", nil); code != http.StatusOK {
		t.Fatalf("starting the drill: %d %s", code, b)
	}
	// Only a sample taken during the drill counts (it lists the drill): on
	// a loaded machine an earlier sample may already look slow.
	d := waitDiagnosis(t, in, "the database as the root cause", func(d dashboard.Diagnosis) bool {
		return len(d.Drills) == 1 && d.Root != nil && d.Root.Component == "database" &&
			downstream(d, "http") != nil && downstream(d, "queue") != nil
	})
	if code, b := call(t, "DELETE", in.admin+"/ops/drill/db-latency", "", "", nil); code != http.StatusOK {
		t.Fatalf("stopping the drill: %d %s", code, b)
	}

	if len(d.Drills) != 1 || !strings.Contains(d.Drills[0], "+300ms") {
		t.Errorf("the diagnosis does not mention the drill: %v", d.Drills)
	}
	if !d.Root.State.Bad() || !slices.ContainsFunc(d.Root.Evidence, func(e string) bool { return strings.HasPrefix(e, "query ") && strings.Contains(e, "normally") }) {
		t.Errorf("root evidence: %+v", d.Root)
	}
	for _, comp := range []string{"http", "queue"} {
		f := downstream(d, comp)
		if !f.State.Bad() || !strings.Contains(f.Because, "wait on the database") {
			t.Errorf("%s: %+v", comp, f)
		}
	}
	var text bytes.Buffer
	d.WriteText(&text)
	t.Logf("diagnosis during the drill:\n%s", text.String())
}

func downstream(d dashboard.Diagnosis, comp string) *dashboard.Finding {
	for i, f := range d.Downstream {
		if f.Component == comp {
			return &d.Downstream[i]
		}
	}
	return nil
}

// waitDiagnosis polls /ops/api/diagnose until ok holds, for up to a
// minute; the drill's effects take a few samples to show.
func waitDiagnosis(t *testing.T, in instance, what string, ok func(dashboard.Diagnosis) bool) dashboard.Diagnosis {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var d dashboard.Diagnosis
	for {
		code, b := call(t, "GET", in.admin+"/ops/api/diagnose", "", "", nil)
		if code != http.StatusOK {
			t.Fatalf("diagnose: %d %s", code, b)
		}
		d = dashboard.Diagnosis{}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		if ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			var text bytes.Buffer
			d.WriteText(&text)
			t.Fatalf("no %s within a minute; last diagnosis:\n%s", what, text.String())
		}
		time.Sleep(100 * time.Millisecond) // the dashboard samples every 100ms
	}
}

// waitMetrics polls /metrics until every series named reaches its value.
func waitMetrics(t *testing.T, in instance, want map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		_, b := call(t, "GET", in.admin+"/metrics", "", "", nil)
		reached := 0
		for _, line := range strings.Split(string(b), "\n") {
			name, value, _ := strings.Cut(line, " ")
			if min, ok := want[name]; ok {
				if v, err := strconv.ParseFloat(value, 64); err == nil && v >= min {
					reached++
				}
			}
		}
		if reached == len(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics did not reach %v within a minute", want)
		}
		time.Sleep(50 * time.Millisecond) // polling the load's progress
	}
}

// TestAdminRootLeadsToDashboard: the admin listener's / redirects to
// /ops/, the dashboard.
func TestAdminRootLeadsToDashboard(t *testing.T) {
	t.Parallel()
	in := startInstance(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Get(in.admin + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/ops/" {
		t.Fatalf("GET /: %s, Location %q", res.Status, res.Header.Get("Location"))
	}
	if code, _ := call(t, "GET", in.admin+"/nothing", "", "", nil); code != http.StatusNotFound {
		t.Fatalf("GET /nothing: %d, want 404: only / redirects", code)
	}
}
