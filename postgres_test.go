package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"onebox/internal/pgtest"
	"onebox/internal/testimages"
)

// send makes one request to the child's API with a bearer token and
// returns the answer, whatever its status.
func (c *child) send(method, path, token, ct string, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

// signup creates a user through the child and logs in.
func (c *child) signup(handle string) (id, token string) {
	c.t.Helper()
	id = c.call("POST", "/v1/users", "", "application/json", strings.NewReader(`{"handle":"`+handle+`","password":"correct horse"}`))["id"].(string)
	token = c.call("POST", "/v1/sessions", "", "application/json", strings.NewReader(`{"handle":"`+handle+`","password":"correct horse"}`))["token"].(string)
	return id, token
}

// waitReplicas waits until the child's readiness finds every replica in
// rotation.
func (c *child) waitReplicas() {
	c.t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		res, err := http.Get(c.adm + "/health/ready")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var rep struct{ Checks map[string]string }
		if json.Unmarshal(body, &rep) == nil && rep.Checks["replicas"] == "ok" {
			return
		}
		last = string(body)
	}
	c.t.Fatalf("replicas not in rotation: %s", last)
}

// pgExec runs statements on the server at url.
func pgExec(t *testing.T, url string, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// pgWait polls query on the server at url until it returns want.
func pgWait(t *testing.T, url, query, want string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var got string
	for ctx.Err() == nil {
		err = conn.QueryRow(ctx, query, args...).Scan(&got)
		if err == nil && got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: got %q (%v), waited for %q", query, got, err, want)
}

// bio is the bio a profile answer shows.
func (c *child) bio(path, token string) string {
	c.t.Helper()
	return c.call("GET", path, token, "", nil)["bio"].(string)
}

// TestReadYourOwnWritesAcrossInstances runs two onebox processes on one
// primary with one streaming replica whose replay is paused: a profile
// changed through A reads back changed through B at once (B's read
// carries the session's token, which the replica has not reached, so the
// primary serves it), while a read without a token, another user's view
// of the profile, comes from the replica and is stale. Once replay
// resumes, B's tokenless reads show the change too.
func TestReadYourOwnWritesAcrossInstances(t *testing.T) {
	primary := pgtest.Schema(t, "read-your-own-writes")
	replica, _ := pgtest.StartReplica(t, pgtest.URL(t, "read-your-own-writes"))
	// The replica with the schema's search path; WithParams encodes its
	// comma as %2C, as the comma-separated list of replica URLs needs.
	u, err := url.Parse(primary)
	if err != nil {
		t.Fatal(err)
	}
	replicaSchema := pgtest.WithParams(t, replica, map[string]string{"search_path": u.Query().Get("search_path")})
	replicaURL := pgtest.WithParams(t, replicaSchema, map[string]string{"pool_max_conns": "2"})
	env := []string{
		"ONEBOX_DATABASE_URL=" + primary,
		"ONEBOX_DATABASE_REPLICA_URLS=" + replicaURL,
		// A paused replica stays in rotation: its lag is not a reason to
		// leave it here, the token is what keeps own reads off it.
		"ONEBOX_DATABASE_MAX_LAG_BYTES=1099511627776",
		"ONEBOX_DATABASE_MAX_LAG=1h",
		// No cache: every read reaches the store.
		"ONEBOX_CACHE_URL=none",
	}
	a := startChild(t, t.TempDir(), env...)
	b := startChild(t, t.TempDir(), env...)
	writerID, writer := a.signup("writer")
	_, reader := a.signup("reader")
	a.call("PATCH", "/v1/users/me", writer, "application/json", strings.NewReader(`{"bio":"old"}`))

	// The replica holds the old bio, then stops replaying.
	pgWait(t, replicaSchema, "select bio from users where id = $1", "old", writerID)
	pgExec(t, replica, "select pg_wal_replay_pause()")
	pgWait(t, replica, "select pg_get_wal_replay_pause_state()", "paused")
	b.waitReplicas()

	a.call("PATCH", "/v1/users/me", writer, "application/json", strings.NewReader(`{"bio":"new"}`))
	if got := b.bio("/v1/users/me", writer); got != "new" {
		t.Fatalf("the writer reads its own profile through another instance: bio %q, want %q", got, "new")
	}
	if got := b.bio("/v1/users/"+writerID, reader); got != "old" {
		t.Fatalf("another user's read from the paused replica: bio %q, want the stale %q (else the replica served nothing)", got, "old")
	}

	pgExec(t, replica, "select pg_wal_replay_resume()")
	for deadline := time.Now().Add(time.Minute); b.bio("/v1/users/"+writerID, reader) != "new"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the replica resumed but reads without a token still show the old bio")
		}
	}
}

// TestPostgresRestart restarts onebox's PostgreSQL under load: while it is
// down, requests answer 503 problem+json with Retry-After, never 500;
// onebox reconnects by itself once it is back; and every upload it
// accepted (202) ends ready.
func TestPostgresRestart(t *testing.T) {
	dbURL, cluster := pgtest.StartPrivate(t)
	c := startChild(t, t.TempDir(), "ONEBOX_DATABASE_URL="+pgtest.WithParams(t, dbURL, map[string]string{"pool_max_conns": "4"}),
		"ONEBOX_CACHE_URL=none", "ONEBOX_RATE_UPLOAD=100000/1m")
	_, token := c.signup("restart")
	jpeg, err := testimages.PhotoJPEG(320, 240, 1, 85)
	if err != nil {
		t.Fatal(err)
	}
	var form bytes.Buffer
	w := multipart.NewWriter(&form)
	fw, _ := w.CreateFormFile("file", "photo.jpg")
	fw.Write(jpeg)
	w.Close()

	var (
		mu        sync.Mutex
		accepted  []string
		bad       []string // answers that are neither a success nor a proper 503
		refused   atomic.Int64
		succeeded atomic.Int64
	)
	requests := []func() (string, *http.Response, []byte, error){
		func() (string, *http.Response, []byte, error) {
			res, body, err := c.send("GET", "/v1/users/me", token, "", nil)
			return "GET /v1/users/me", res, body, err
		},
		func() (string, *http.Response, []byte, error) {
			res, body, err := c.send("PATCH", "/v1/users/me", token, "application/json", []byte(`{"bio":"restart"}`))
			return "PATCH /v1/users/me", res, body, err
		},
		func() (string, *http.Response, []byte, error) {
			res, body, err := c.send("POST", "/v1/photos", token, w.FormDataContentType(), form.Bytes())
			if err == nil && res.StatusCode == http.StatusAccepted {
				var p struct{ ID string }
				_ = json.Unmarshal(body, &p)
				mu.Lock()
				accepted = append(accepted, p.ID)
				mu.Unlock()
			}
			return "POST /v1/photos", res, body, err
		},
	}
	ctx, stop := context.WithCancel(t.Context())
	var load sync.WaitGroup
	for _, req := range requests {
		load.Go(func() {
			for ctx.Err() == nil {
				what, res, body, err := req()
				switch {
				case err != nil:
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: %v", what, err))
					mu.Unlock()
				case res.StatusCode < 300:
					succeeded.Add(1)
				case res.StatusCode == http.StatusServiceUnavailable && res.Header.Get("Retry-After") != "" &&
					res.Header.Get("Content-Type") == "application/problem+json":
					refused.Add(1)
				default:
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: %d %s", what, res.StatusCode, body))
					mu.Unlock()
				}
			}
		})
	}
	// waitFor waits until n more requests than now have had the answer
	// counted by counter.
	waitFor := func(what string, counter *atomic.Int64, n int64) {
		t.Helper()
		want := counter.Load() + n
		for deadline := time.Now().Add(time.Minute); counter.Load() < want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				stop()
				load.Wait()
				t.Fatalf("%s: waited for %d, got %d; bad answers %v", what, want, counter.Load(), bad[:min(len(bad), 10)])
			}
		}
	}
	waitFor("before the stop", &succeeded, 10)
	if err := cluster.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor("while PostgreSQL is down", &refused, 10)
	if err := cluster.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor("after the start", &succeeded, 10)
	stop()
	load.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d answers were neither a success nor 503 problem+json with Retry-After: %v", len(bad), bad[:min(len(bad), 10)])
	}
	if len(accepted) == 0 {
		t.Fatal("no upload was accepted")
	}
	t.Logf("%d successes, %d refusals (503), %d uploads accepted", succeeded.Load(), refused.Load(), len(accepted))
	for _, id := range accepted {
		if ph := c.waitPhoto(token, id); ph["status"] != "ready" {
			t.Fatalf("accepted photo %s after the restart: %v", id, ph)
		}
	}
}
