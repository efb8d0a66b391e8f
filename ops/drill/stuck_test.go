package drill_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/ops/drill"
	"onebox/store/sqlite"
)

// TestStuckJobs: the drill's requests are bounded, its jobs are queued,
// and its handler, which ignores its ctx, returns when the drill stops
// and at once when none runs.
func TestStuckJobs(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.New(ctx, sqlite.Options{Path: t.TempDir() + "/onebox.db"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	queue := st.Queue(jobsqlite.Options{})
	dr := drill.New(drill.Options{})
	handle := dr.EnableStuckJobs(queue)
	serve := func(method, target string) int {
		rec := httptest.NewRecorder()
		dr.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
		return rec.Code
	}
	for _, tt := range []struct {
		method, target string
		want           int
	}{
		{"POST", "/ops/drill/stuck-job", http.StatusBadRequest},
		{"POST", "/ops/drill/stuck-job?for=0s", http.StatusBadRequest},
		{"POST", "/ops/drill/stuck-job?for=31s", http.StatusBadRequest},
		{"POST", "/ops/drill/stuck-job?for=1s&count=0", http.StatusBadRequest},
		{"POST", "/ops/drill/stuck-job?for=1s&count=101", http.StatusBadRequest},
		{"POST", "/ops/drill/stuck-job?for=1s&count=two", http.StatusBadRequest},
		{"GET", "/ops/drill/stuck-job", http.StatusMethodNotAllowed},
		{"POST", "/ops/drill/stuck-job?for=30s&count=2", http.StatusAccepted},
	} {
		if got := serve(tt.method, tt.target); got != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.target, got, tt.want)
		}
	}
	stats, err := queue.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := stats.Kinds[drill.KindStuck].Queued; n != 2 {
		t.Fatalf("%d %s jobs queued, want 2", n, drill.KindStuck)
	}

	job := jobs.Message{Kind: drill.KindStuck, Payload: []byte(`{"for":"30s"}`)}
	done := make(chan error, 1)
	cancelled, cancel := context.WithCancel(ctx)
	cancel() // ignored: that is the fault
	go func() { done <- handle(cancelled, job) }()
	select {
	case err := <-done:
		t.Fatalf("the stuck handler returned with its ctx done: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if code := serve("DELETE", "/ops/drill/stuck-job"); code != http.StatusOK {
		t.Fatalf("DELETE: %d", code)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stuck handler still runs after the drill stopped")
	}
	// A job that starts after the drill stopped does nothing.
	start := time.Now()
	if err := handle(ctx, job); err != nil || time.Since(start) > time.Second {
		t.Fatalf("handler after the drill: %v after %v", err, time.Since(start))
	}
	if dr.StopStuckJobs() {
		t.Error("StopStuckJobs with no drill running reported one")
	}
}

// TestJobDrillQueueDown: a job drill whose queue cannot take its job
// answers 503, which the operator may retry, not 400.
func TestJobDrillQueueDown(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.New(ctx, sqlite.Options{Path: t.TempDir() + "/onebox.db"})
	if err != nil {
		t.Fatal(err)
	}
	queue := st.Queue(jobsqlite.Options{})
	dr := drill.New(drill.Options{})
	dr.EnableStuckJobs(queue)
	dr.EnableHoldWriter(drill.HoldWriterOptions{Queue: queue, Hold: st.HoldWriter})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/ops/drill/stuck-job?for=1s", "/ops/drill/writer-hold?for=1s"} {
		rec := httptest.NewRecorder()
		dr.ServeHTTP(rec, httptest.NewRequest("POST", target, nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("POST %s with the queue's database closed: %d %s, want 503", target, rec.Code, rec.Body)
		}
	}
}
