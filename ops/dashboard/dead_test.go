package dashboard_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/ops/dashboard"
	"onebox/store/sqlite"
)

// deadQueue is a real queue holding dead jobs, as they died: kind, last
// error and payload each.
func deadQueue(t *testing.T, dead ...[3]string) (jobs.Queue, []string) {
	t.Helper()
	st, err := sqlite.New(t.Context(), sqlite.Options{Path: filepath.Join(t.TempDir(), "d.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	q := st.Queue(jobsqlite.Options{})
	var ids []string
	for _, d := range dead {
		if err := q.Send(t.Context(), jobs.Message{Kind: d[0], Payload: json.RawMessage(d[2])}, jobs.SendOptions{}); err != nil {
			t.Fatal(err)
		}
		m, err := q.Receive(t.Context(), d[0], 1, time.Minute)
		if err != nil || len(m) != 1 {
			t.Fatalf("Receive: %v %v", m, err)
		}
		if err := q.DeadLetter(t.Context(), m[0].Receipt(), d[1]); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m[0].ID)
		time.Sleep(2 * time.Millisecond) // died_at is kept to the millisecond: keep the order
	}
	return q, ids
}

// TestDeadLetters lists dead jobs by kind with their last error, attempts
// and a payload summary, filters them, and redrives one, those matching
// a kind and an error text, and all, waking the workers each time.
func TestDeadLetters(t *testing.T) {
	t.Parallel()
	big := `{"photo": "` + strings.Repeat("x", 300) + `"}`
	q, ids := deadQueue(t,
		[3]string{"photo.process", "decode: timeout after 5m", big},
		[3]string{"photo.process", "corrupt jpeg", `{ "photo": "p2" }`},
		[3]string{"photo.cleanup", "storage: timeout", `{"photo":"p3"}`},
	)
	var woken atomic.Int32
	h := dashboard.New(dashboard.Options{Scrape: func(io.Writer) error { return nil }, Dead: q, OnRedrive: func() { woken.Add(1) }}).Handler()
	const local = "127.0.0.1:8081"
	list := func(query string) dashboard.DeadList {
		t.Helper()
		w := serve(h, local, "GET", "/ops/api/dead"+query)
		if w.Code != 200 {
			t.Fatalf("GET %s: %d %s", query, w.Code, w.Body)
		}
		var l dashboard.DeadList
		if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}

	l := list("")
	if got := fmt.Sprint(l.Kinds); got != "[{photo.cleanup 1} {photo.process 2}]" {
		t.Errorf("kinds %s, want each kind's dead count", got)
	}
	if len(l.Items) != 3 || l.Items[0].ID != ids[2] || l.Items[2].ID != ids[0] {
		t.Fatalf("items %+v, want the 3, newest first", l.Items)
	}
	first := l.Items[2]
	if first.Kind != "photo.process" || first.LastError != "decode: timeout after 5m" || first.Attempts != 1 {
		t.Errorf("item %+v, want its kind, last error and attempts", first)
	}
	if n := utf8.RuneCountInString(first.Payload); n != 120 || !strings.HasPrefix(first.Payload, `{"photo":"xxx`) || !strings.HasSuffix(first.Payload, "…") {
		t.Errorf("payload summary %q (%d runes), want the compact JSON cut at 120", first.Payload, n)
	}
	if p := l.Items[1].Payload; p != `{"photo":"p2"}` {
		t.Errorf("payload summary %q, want the compact JSON", p)
	}
	if l := list("?kind=photo.process&error=timeout"); len(l.Items) != 1 || l.Items[0].ID != ids[0] {
		t.Errorf("kind and error filter: %+v, want only %s", l.Items, ids[0])
	}

	for _, c := range []struct{ method, target string }{
		{"GET", "/ops/api/dead?limit=0"},
		{"GET", "/ops/api/dead?limit=many"},
		{"GET", "/ops/api/dead?id="},
		{"POST", "/ops/api/dead/redrive"},
		{"POST", "/ops/api/dead/redrive?id=a%20b"},
		{"POST", "/ops/api/dead/redrive?kind=" + strings.Repeat("k", 1001)},
	} {
		w := serve(h, local, c.method, c.target)
		if w.Code != 400 || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: %d %q, want a 400 problem", c.method, c.target, w.Code, w.Header().Get("Content-Type"))
		}
	}

	redrive := func(query string, want int) {
		t.Helper()
		w := serve(h, local, "POST", "/ops/api/dead/redrive"+query)
		if w.Code != 200 || strings.TrimSpace(w.Body.String()) != fmt.Sprintf(`{"redriven":%d}`, want) {
			t.Errorf("POST redrive%s: %d %s, want %d redriven", query, w.Code, w.Body, want)
		}
	}
	redrive("?kind=photo.process&error=timeout", 1)
	redrive("?id="+ids[2], 1)
	if l := list(""); len(l.Items) != 1 || l.Items[0].ID != ids[1] {
		t.Errorf("after two redrives: %+v, want only %s left", l.Items, ids[1])
	}
	redrive("?kind=photo.cleanup", 0)
	redrive("?all=true", 1)
	if l := list(""); len(l.Items) != 0 || len(l.Kinds) != 0 {
		t.Errorf("after redriving all: %+v", l)
	}
	if n := woken.Load(); n != 3 {
		t.Errorf("workers woken %d times, want once per redrive that moved jobs (3)", n)
	}
	if st, err := q.Stats(t.Context()); err != nil || st.Kinds["photo.process"].Queued != 2 || st.Kinds["photo.cleanup"].Queued != 1 {
		t.Errorf("queue after redriving all: %+v, %v; want the 3 queued", st, err)
	}
}

// TestDeadLettersAccess: listing and redriving need the operator token,
// a redrive from another origin's page is refused, and without a queue
// wired both say so.
func TestDeadLettersAccess(t *testing.T) {
	t.Parallel()
	q, _ := deadQueue(t, [3]string{"k", "died", `{}`})
	locked := dashboard.New(dashboard.Options{Scrape: func(io.Writer) error { return nil }, Dead: q, Token: "s3cret"}).Handler()
	unwired := dashboard.New(dashboard.Options{Scrape: func(io.Writer) error { return nil }}).Handler()
	bearer := []string{"Authorization", "Bearer s3cret"}
	const public, loop = "10.1.2.3:8081", "127.0.0.1:8081"
	for _, c := range []struct {
		name           string
		h              http.Handler
		local          string
		method, target string
		headers        []string
		want           int
	}{
		{"list without the token", locked, public, "GET", "/ops/api/dead", nil, 401},
		{"redrive without the token", locked, public, "POST", "/ops/api/dead/redrive?all=true", nil, 401},
		{"redrive from another site", locked, public, "POST", "/ops/api/dead/redrive?all=true", append([]string{"Sec-Fetch-Site", "cross-site"}, bearer...), 403},
		{"list with the token", locked, public, "GET", "/ops/api/dead", bearer, 200},
		{"no queue wired", unwired, loop, "GET", "/ops/api/dead", nil, 404},
		{"no queue wired, redrive", unwired, loop, "POST", "/ops/api/dead/redrive?all=true", nil, 404},
		{"redrive is a POST", locked, public, "GET", "/ops/api/dead/redrive?all=true", bearer, 405},
	} {
		if w := serve(c.h, c.local, c.method, c.target, c.headers...); w.Code != c.want {
			t.Errorf("%s: %d, want %d: %s", c.name, w.Code, c.want, w.Body)
		}
	}
}
