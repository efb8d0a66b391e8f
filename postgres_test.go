package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"onebox/internal/pgtest"
)

// send makes one request to the child's API with a bearer token and
// returns the answer, whatever its status.
func (c *child) send(method, path, token, ct string, body []byte) (*http.Response, []byte, error) {
	return request(http.DefaultClient, method, c.base+path, token, ct, bytes.NewReader(body))
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

// waitMetric polls the child's /metrics until the sample series (its
// name and labels, as exposed) has a value ok accepts.
func (c *child) waitMetric(series string, ok func(float64) bool) {
	c.t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, body, err := request(http.DefaultClient, "GET", c.adm+"/metrics", "", "", nil)
		if err != nil {
			c.t.Fatal(err)
		}
		last = "absent"
		for line := range strings.Lines(string(body)) {
			if v, found := strings.CutPrefix(strings.TrimSpace(line), series+" "); found {
				last = v
				if f, err := strconv.ParseFloat(v, 64); err == nil && ok(f) {
					return
				}
			}
		}
	}
	c.t.Fatalf("%s: %s after 30s", series, last)
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
	// A's lag bound is one byte: once replay pauses behind a write, its
	// replica leaves the rotation, which its readiness and metrics say.
	a := startChild(t, t.TempDir(), append(slices.Clone(env), "ONEBOX_DATABASE_MAX_LAG_BYTES=1")...)
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

	// The lag is a metric per replica: B's replica is behind, yet in
	// rotation under B's bound; A's is out, a readiness detail that leaves
	// A ready (its reads go to the primary).
	ru, err := url.Parse(replica)
	if err != nil {
		t.Fatal(err)
	}
	name := ru.Host // host:port, as the store names a replica
	b.waitMetric(`onebox_db_replica_lag_bytes{replica="`+name+`"}`, func(v float64) bool { return v > 0 })
	b.waitMetric(`onebox_db_replica_in_rotation{replica="`+name+`"}`, func(v float64) bool { return v == 1 })
	a.waitMetric(`onebox_db_replica_in_rotation{replica="`+name+`"}`, func(v float64) bool { return v == 0 })
	status, _, checks := a.readiness(a.adm)
	if want := "replica " + name + " out of rotation (lag "; status != http.StatusOK || !strings.HasPrefix(checks["replicas"], want) {
		t.Errorf("A's readiness with its replica over the lag bound: %d, replicas check %q; want 200 and %q…", status, checks["replicas"], want)
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
	l := startLoad(t, c, token)
	l.waitFor("before the stop", &l.succeeded, 10)
	if err := cluster.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	l.waitFor("while PostgreSQL is down", &l.refused, 10)
	if err := cluster.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	l.waitFor("after the start", &l.succeeded, 10)
	for _, id := range l.finish() {
		if ph := c.waitPhoto(token, id); ph["status"] != "ready" {
			t.Fatalf("accepted photo %s after the restart: %v", id, ph)
		}
	}
}
