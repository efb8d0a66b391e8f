package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"onebox/internal/testimages"
)

// do sends one request to the child and returns its status, headers and
// body, whatever the status (call, by contrast, fails the test on 4xx/5xx).
func (c *child) do(method, url, ct string, body io.Reader) (*http.Response, []byte) {
	c.t.Helper()
	res, b, err := request(http.DefaultClient, method, url, "", ct, body)
	if err != nil {
		c.t.Fatal(err)
	}
	return res, b
}

// wantProblem fails the test unless res is status as problem+json of the
// given type.
func wantProblem(t *testing.T, what string, res *http.Response, body []byte, status int, kind string) {
	t.Helper()
	if res.StatusCode != status || res.Header.Get("Content-Type") != "application/problem+json" ||
		!bytes.Contains(body, []byte(`"type":"/problems/`+kind+`"`)) {
		t.Fatalf("%s: %d %s %s, want %d problem+json /problems/%s", what, res.StatusCode, res.Header.Get("Content-Type"), body, status, kind)
	}
}

// TestDatabaseLockedByAnotherProcess holds the database's write lock from
// a second connection (another process, as far as SQLite can tell: its
// own file handles and locks) for longer than onebox's busy timeout:
// writes answer 503 with Retry-After once that timeout runs out, reads
// and liveness keep answering (WAL readers take no lock a writer holds),
// and once the lock is released writes succeed again, no restart needed.
func TestDatabaseLockedByAnotherProcess(t *testing.T) {
	data := t.TempDir()
	// A request timeout well past the busy timeout, so the 503 is the
	// lock's (problem type busy), not the request deadline's: a write may
	// queue in onebox behind background writes (the job queue's), each
	// of which waits out the busy timeout too.
	const busyTimeout = time.Second
	c := startChild(t, data, "ONEBOX_DB_BUSY_TIMEOUT="+busyTimeout.String(), "ONEBOX_REQUEST_TIMEOUT=1m")
	user := c.call("POST", "/v1/users", "", "application/json", strings.NewReader(`{"handle":"locked","password":"correct horse"}`))
	id := user["id"].(string)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "onebox.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	// The lock must really be held: an insert, so the transaction is a
	// writer's whatever journal mode EXCLUSIVE meets.
	if _, err := conn.ExecContext(ctx, "CREATE TABLE fault_lock (x)"); err != nil {
		t.Fatal(err)
	}

	// A write waits out the busy timeout and gives up with 503: the
	// bound is only there to catch a hang.
	start := time.Now()
	res, body := c.do("POST", c.base+"/v1/users", "application/json", strings.NewReader(`{"handle":"blocked","password":"correct horse"}`))
	wantProblem(t, "write under the lock", res, body, http.StatusServiceUnavailable, "busy")
	if res.Header.Get("Retry-After") == "" {
		t.Fatalf("write under the lock: 503 without Retry-After: %v", res.Header)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("write under the lock took %v to be refused", d)
	}

	// Reads and liveness go on while the lock is held.
	for _, url := range []string{c.base + "/v1/users/" + id, c.base + "/health/live", c.adm + "/health/live"} {
		if res, body := c.do("GET", url, "", nil); res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s under the lock: %d %s", url, res.StatusCode, body)
		}
	}

	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	// Released: the very next write goes through.
	c.call("POST", "/v1/users", "", "application/json", strings.NewReader(`{"handle":"unblocked","password":"correct horse"}`))
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it when the test ends. It skips unless the test runs as root and may
// mount, except under CI=true, where it fails: CI runs as root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		skip("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes zeros to name until the file system is full.
func fill(t *testing.T, name string) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// The last chunk may have been cut short: top up byte by byte.
	for {
		if _, err := f.Write(chunk[:1]); err != nil {
			break
		}
	}
}

// TestDiskFull runs onebox on a small tmpfs and fills it: an upload
// answers 507 problem+json and leaves no file behind, readiness is 503
// and names the disk, the database stays intact, and when space returns
// the service recovers by itself.
func TestDiskFull(t *testing.T) {
	data := mountTmpfs(t, "8m")
	jpeg, err := testimages.PhotoJPEG(640, 480, 1, 85)
	if err != nil {
		t.Fatal(err)
	}
	upload := func(c *child, token string) (*http.Response, []byte) {
		var body bytes.Buffer
		w := multipart.NewWriter(&body)
		fw, _ := w.CreateFormFile("file", "photo.jpg")
		fw.Write(jpeg)
		w.Close()
		req, _ := http.NewRequest("POST", c.base+"/v1/photos", &body)
		req.Header.Set("Content-Type", w.FormDataContentType())
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}

	c := startChild(t, data)
	c.call("POST", "/v1/users", "", "application/json", strings.NewReader(`{"handle":"full","password":"correct horse"}`))
	token := c.call("POST", "/v1/sessions", "", "application/json", strings.NewReader(`{"handle":"full","password":"correct horse"}`))["token"].(string)

	filler := filepath.Join(data, "filler")
	fill(t, filler)

	res, body := upload(c, token)
	wantProblem(t, "upload on a full disk", res, body, http.StatusInsufficientStorage, "insufficient-storage")
	visible, hidden := files(t, filepath.Join(data, "media"))
	if len(visible)+len(hidden) != 0 {
		t.Fatalf("the refused upload left files: %v %v", visible, hidden)
	}
	// The database's own writes fail too once its WAL must grow
	// (SQLITE_FULL), and say so the same way. The checkpointer starts the
	// WAL over after each checkpoint, so the first writes may still fit
	// in the space the file already has.
	for i := 0; ; i++ {
		var err error
		res, body, err = request(http.DefaultClient, "PATCH", c.base+"/v1/users/me", token, "application/merge-patch+json", strings.NewReader(fmt.Sprintf(`{"bio":"%d %s"}`, i, strings.Repeat("x", 400))))
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK || i == 500 {
			break
		}
	}
	wantProblem(t, "profile edit on a full disk", res, body, http.StatusInsufficientStorage, "insufficient-storage")
	res, body = c.do("GET", c.adm+"/health/ready", "", nil)
	if res.StatusCode != http.StatusServiceUnavailable || !bytes.Contains(body, []byte("disk")) {
		t.Fatalf("ready on a full disk: %d %s, want 503 naming the disk", res.StatusCode, body)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	c.waitReady()
	c.call("POST", "/v1/users", "", "application/json", strings.NewReader(`{"handle":"nospace","password":"correct horse"}`))
	res, body = upload(c, token)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("upload once space returned: %d %s", res.StatusCode, body)
	}
	var created struct{ ID string }
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	if ph := c.waitPhoto(token, created.ID); ph["status"] != "ready" {
		t.Fatalf("photo uploaded once space returned: %v", ph)
	}

	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "onebox.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check after the disk filled: %q %v", ok, err)
	}
}

// TestStuckJobDrill runs the stuck-job drill in a child process: jobs
// whose handler ignores its context. At their timeout the Runner abandons
// each and frees its slot (the next stuck job starts, and is abandoned in
// turn), onebox_jobs_abandoned counts them, readiness turns 503 naming
// them once they reach the cap, a photo meanwhile is processed, and once
// the drill is stopped the handlers return and readiness recovers.
func TestStuckJobDrill(t *testing.T) {
	const limit = 2
	c := startChild(t, t.TempDir(), "ONEBOX_DRILLS=true", "ONEBOX_OPS_TOKEN="+opsToken, "ONEBOX_OPS_INTERVAL=100ms", fmt.Sprint("ONEBOX_JOB_ABANDONED_MAX=", limit))
	admin := func(method, path string) (int, string) {
		t.Helper()
		res, b, err := request(http.DefaultClient, method, c.adm+path, opsToken, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, string(b)
	}
	// metric is a sample's value in /metrics, "" while it has none.
	metric := func(name string) string {
		t.Helper()
		_, body := admin("GET", "/metrics")
		for line := range strings.Lines(body) {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	waitFor := func(what string, within time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(within); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited %v for %s; log:\n%s", within, what, c.log)
			}
		}
	}
	abandoned := `onebox_jobs_abandoned{kind="drill.stuck"}`

	c.call("POST", "/v1/users", "", "application/json", strings.NewReader(`{"handle":"stuck","password":"correct horse"}`))
	token := c.call("POST", "/v1/sessions", "", "application/json", strings.NewReader(`{"handle":"stuck","password":"correct horse"}`))["token"].(string)
	jpeg, err := testimages.PhotoJPEG(640, 480, 1, 85)
	if err != nil {
		t.Fatal(err)
	}
	photo := filepath.Join(t.TempDir(), "photo.jpg")
	if err := os.WriteFile(photo, jpeg, 0o600); err != nil {
		t.Fatal(err)
	}

	// Each job sleeps far past its 1s timeout: only the Runner giving up
	// on it frees the one slot of its kind for the next.
	if code, body := admin("POST", fmt.Sprintf("/ops/drill/stuck-job?for=30s&count=%d", limit)); code != http.StatusAccepted {
		t.Fatalf("drill: %d %s", code, body)
	}
	waitFor("the first stuck job to be abandoned", 20*time.Second, func() bool { return metric(abandoned) == "1" })
	if code, body := admin("GET", "/health/ready"); code != http.StatusOK {
		t.Fatalf("ready with 1 abandoned job, under the cap of %d: %d %s", limit, code, body)
	}
	// Other jobs flow meanwhile.
	id := c.upload(token, photo)
	waitFor("the second stuck job to be abandoned", 20*time.Second, func() bool { return metric(abandoned) == fmt.Sprint(limit) })
	code, body := admin("GET", "/health/ready")
	if want := fmt.Sprintf("%d abandoned job handlers still running", limit); code != http.StatusServiceUnavailable || !strings.Contains(body, want) {
		t.Fatalf("ready at the cap of abandoned jobs: %d %s, want 503 saying %q", code, body, want)
	}
	if ph := c.waitPhoto(token, id); ph["status"] != "ready" {
		t.Fatalf("photo uploaded while jobs were stuck: %v", ph)
	}
	// Abandoned on their one attempt: dead-lettered, not retried.
	waitFor("the stuck jobs dead-lettered", 20*time.Second, func() bool { return metric(`onebox_jobs_dead{kind="drill.stuck"}`) == fmt.Sprint(limit) })

	if code, body := admin("DELETE", "/ops/drill/stuck-job"); code != http.StatusOK || !strings.Contains(body, `"stopped":true`) {
		t.Fatalf("stopping the drill: %d %s", code, body)
	}
	// Well before their 30s are up.
	waitFor("the abandoned handlers to return", 10*time.Second, func() bool { return metric(abandoned) == "0" })
	c.waitReady()
}
