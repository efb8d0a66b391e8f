package drill_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"onebox/ops/drill"
	"onebox/store"
	"onebox/store/sqlite"
)

// events records the query hook's events.
// events records the query events a store reports: as the drill's hook
// passes them on (evs), and as the store measured them, before the drill
// added its latency (raw), so a test can tell exactly what was added.
type events struct {
	mu  sync.Mutex
	evs []store.QueryEvent
	raw []store.QueryEvent
}

func (e *events) add(_ context.Context, ev store.QueryEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
}

// hook is the store's OnQuery: it records each event as measured, then
// hands it to the drill's hook, which passes it on to add.
func (e *events) hook(dr *drill.Drill) func(context.Context, store.QueryEvent) {
	observe := dr.ObserveQueries(e.add)
	return func(ctx context.Context, ev store.QueryEvent) {
		e.mu.Lock()
		e.raw = append(e.raw, ev)
		e.mu.Unlock()
		observe(ctx, ev)
	}
}

func (e *events) take() []store.QueryEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	evs := e.evs
	e.evs, e.raw = nil, nil
	return evs
}

// added returns, for each event since the last take, the latency the
// drill added to it (what it reported less what the store measured).
func (e *events) added() []time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := make([]time.Duration, len(e.evs))
	for i := range e.evs {
		d[i] = e.evs[i].Duration - e.raw[i].Duration
	}
	e.evs, e.raw = nil, nil
	return d
}

// newStore opens a fresh SQLite store wrapped by a drill, with one user.
func newStore(t *testing.T) (*drill.Drill, store.Store, *events, string) {
	t.Helper()
	dr := drill.New(drill.Options{})
	evs := &events{}
	st, err := sqlite.New(context.Background(), sqlite.Options{Path: t.TempDir() + "/drill.db", OnQuery: evs.hook(dr)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	u, err := st.CreateUser(context.Background(), store.CreateUserParams{ID: "01890000-0000-7000-8000-000000000001", Handle: "alice", PasswordHash: "x", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	evs.take()
	return dr, dr.Store(st), evs, u.ID
}

func TestNoDrillNoDelay(t *testing.T) {
	t.Parallel()
	dr, st, evs, id := newStore(t)
	if _, err := st.User(context.Background(), store.UserParams{ID: id}); err != nil {
		t.Fatal(err)
	}
	added := evs.added()
	if len(added) == 0 {
		t.Fatal("no query reported")
	}
	for i, d := range added {
		if d != 0 {
			t.Fatalf("query %d reports %s more than it measured, with no drill", i+1, d)
		}
	}
	if dr.Active() != nil {
		t.Fatalf("active %v", dr.Active())
	}
}

// TestLatencyReachesQueryHook: a delayed call waits, and its first query
// reports the wait as part of its duration, once.
func TestLatencyReachesQueryHook(t *testing.T) {
	t.Parallel()
	dr, st, evs, id := newStore(t)
	if err := dr.StartDBLatency(40*time.Millisecond, time.Minute); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Deleting a user is a transaction of several statements.
	if err := st.DeleteUser(context.Background(), store.DeleteUserParams{ID: id}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 40*time.Millisecond {
		t.Fatalf("call took %s, under the drill's 40ms", took)
	}
	// Exactly what the drill added to each query's reported duration, not
	// a bound on how long the queries took (under load one can take longer
	// than the drill's delay).
	added := evs.added()
	if len(added) < 2 {
		t.Fatalf("%d events, want the several queries of a transaction", len(added))
	}
	if added[0] != 40*time.Millisecond {
		t.Fatalf("first query reports %s more than it measured, want the drill's 40ms", added[0])
	}
	for i, d := range added[1:] {
		if d != 0 {
			t.Fatalf("latency counted twice: query %d reports %s more than it measured", i+2, d)
		}
	}
	if a := dr.Active(); len(a) != 1 || !strings.Contains(a[0], "database latency +40ms") {
		t.Fatalf("active %v", a)
	}
}

func TestLatencyHonoursContext(t *testing.T) {
	t.Parallel()
	dr, st, _, id := newStore(t)
	if err := dr.StartDBLatency(20*time.Second, time.Minute); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := st.User(ctx, store.UserParams{ID: id})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("err %v after %s", err, time.Since(start))
	}
	if !dr.StopDBLatency() || dr.StopDBLatency() {
		t.Fatal("stop should report a running drill once")
	}
	if _, err := st.User(context.Background(), store.UserParams{ID: id}); err != nil {
		t.Fatal(err)
	}
}

func TestDrillExpires(t *testing.T) {
	t.Parallel()
	dr := drill.New(drill.Options{})
	if err := dr.StartDBLatency(time.Second, 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for dr.Active() != nil {
		if time.Now().After(deadline) {
			t.Fatal("drill did not expire")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAPI(t *testing.T) {
	t.Parallel()
	dr := drill.New(drill.Options{MaxDelay: time.Second, MaxFor: time.Minute})
	do := func(method, target string) (int, map[string]any) {
		w := httptest.NewRecorder()
		dr.ServeHTTP(w, httptest.NewRequest(method, target, nil))
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("%s %s: %s", method, target, w.Body)
		}
		return w.Code, m
	}
	for _, bad := range []string{
		"/ops/drill/db-latency", "/ops/drill/db-latency?delay=x", "/ops/drill/db-latency?delay=2s",
		"/ops/drill/db-latency?delay=10ms&for=2h", "/ops/drill/db-latency?delay=10ms&for=-1s",
	} {
		if code, m := do("POST", bad); code != 400 || m["error"] == "" {
			t.Errorf("POST %s: %d %v", bad, code, m)
		}
	}
	if code, _ := do("POST", "/ops/drill/disk-full"); code != 404 {
		t.Errorf("unknown drill: %d", code)
	}
	if code, _ := do("PUT", "/ops/drill/db-latency"); code != 405 {
		t.Errorf("PUT: %d", code)
	}
	if code, m := do("POST", "/ops/drill/db-latency?delay=500ms&for=60s"); code != 200 || len(m["active"].([]any)) != 1 {
		t.Fatalf("start: %d %v", code, m)
	}
	if code, m := do("GET", "/ops/drill/db-latency"); code != 200 || !strings.Contains(m["active"].([]any)[0].(string), "+500ms") {
		t.Fatalf("status: %d %v", code, m)
	}
	if code, m := do("DELETE", "/ops/drill/db-latency"); code != 200 || m["stopped"] != true {
		t.Fatalf("stop: %d %v", code, m)
	}
	if _, m := do("GET", "/ops/drill/db-latency"); m["active"] != nil {
		t.Fatalf("after stop: %v", m)
	}
}

var _ http.Handler = (*drill.Drill)(nil)
