package main

import (
	"bufio"
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// deployed is onebox run as deploy/onebox.service runs it: an installed
// binary (a copy of this test binary, which serves as onebox in a child,
// see TestMain) writing a pid file, replaced by deploy/deploy.sh.
type deployed struct {
	t                 *testing.T
	dir, bin, pidFile string
	logPath           string
	base, adm         string
	env               []string
	first             *exec.Cmd
	firstDone         chan struct{}
}

func startDeployed(t *testing.T, env ...string) *deployed {
	t.Helper()
	d := &deployed{t: t, dir: t.TempDir(), base: "http://" + freeAddr(t), adm: "http://" + freeAddr(t)}
	d.bin = filepath.Join(d.dir, "onebox")
	d.pidFile = filepath.Join(d.dir, "onebox.pid")
	d.logPath = filepath.Join(d.dir, "onebox.log")
	copyFile(t, os.Args[0], d.bin)
	// A file, not a pipe: every later process inherits it, and a pipe
	// would keep the first process's Wait waiting for the last of them.
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.first = exec.Command(d.bin, "-test.run=^$")
	d.first.Env = append(os.Environ(),
		"ONEBOX_TEST_CHILD=serve",
		"ONEBOX_ADDR="+strings.TrimPrefix(d.base, "http://"),
		"ONEBOX_ADMIN_ADDR="+strings.TrimPrefix(d.adm, "http://"),
		"ONEBOX_DATA_DIR="+filepath.Join(d.dir, "data"),
		"ONEBOX_PID_FILE="+d.pidFile,
		"ONEBOX_HASH_CONCURRENCY=2",
		"ONEBOX_RATE_API=1000000/1m", "ONEBOX_RATE_AUTH=1000000/1m", "ONEBOX_RATE_AUTH_HANDLE=1000000/1m", "ONEBOX_RATE_UPLOAD=1000000/1m",
		// As onebox.service sets it: a draining process answers every
		// request with Connection: close for this long before it closes
		// the connections left idle.
		"ONEBOX_SHUTDOWN_DELAY=1s",
	)
	d.first.Env = append(d.first.Env, env...)
	d.first.Stdout, d.first.Stderr = logf, logf
	if err := d.first.Start(); err != nil {
		t.Fatal(err)
	}
	d.firstDone = make(chan struct{})
	go func() { _ = d.first.Wait(); close(d.firstDone) }() // reaps it, so its exit shows
	t.Cleanup(d.stop)
	for deadline := time.Now().Add(time.Minute); d.pid() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no pid file; log:\n%s", d.log())
		}
	}
	return d
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func (d *deployed) log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// pid is the pid file's, 0 before there is one.
func (d *deployed) pid() int {
	b, _ := os.ReadFile(d.pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// running reports whether pid is a live process: not gone, not a
// zombie (a replaced process's parent has exited; whoever adopted it
// may not reap it at once).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// deploy runs deploy/deploy.sh with newBin, as README's Deploy says.
func (d *deployed) deploy(newBin string, env ...string) (string, error) {
	cmd := exec.Command("sh", filepath.Join("deploy", "deploy.sh"), newBin)
	cmd.Env = append(os.Environ(), "ONEBOX_BIN="+d.bin, "ONEBOX_PID_FILE="+d.pidFile)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// stop ends the serving process with SIGTERM and waits until it is
// gone, its log flushed.
func (d *deployed) stop() {
	pid := d.pid()
	if pid == 0 || !running(pid) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(time.Minute); running(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			d.t.Errorf("pid %d did not stop on SIGTERM", pid)
			return
		}
	}
}

// load is steady, bounded traffic from a few client goroutines, each
// with a user of its own: public profile reads, profile edits, uploads
// and sign-ups. Every answer other than the expected status, and every
// transport error, is a failure.
type load struct {
	base     string
	client   *http.Client
	image    []byte
	mu       sync.Mutex
	failures []string
	uploads  map[string]string // photo id → its owner's token
	done     atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup
}

func (l *load) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, fmt.Sprintf(format, args...))
}

// do sends one request and returns its body if the status is want.
func (l *load) do(want int, method, path, token, ct string, body []byte, header ...string) []byte {
	res, b, err := request(l.client, method, l.base+path, token, ct, bytes.NewReader(body), header...)
	if res == nil {
		l.fail("%s %s: %v", method, path, err)
		return nil
	}
	if err != nil || res.StatusCode != want {
		l.fail("%s %s: %d %v %s, want %d", method, path, res.StatusCode, err, b, want)
		return nil
	}
	l.done.Add(1)
	return b
}

func (l *load) signUp(handle string) (id, token string) {
	cred := fmt.Sprintf(`{"handle":%q,"password":"correct horse"}`, handle)
	var u struct{ ID, Token string }
	if b := l.do(http.StatusCreated, "POST", "/v1/users", "", "application/json", []byte(cred)); b != nil {
		_ = json.Unmarshal(b, &u)
	}
	if b := l.do(http.StatusCreated, "POST", "/v1/sessions", "", "application/json", []byte(cred)); b != nil {
		_ = json.Unmarshal(b, &u)
	}
	return u.ID, u.Token
}

func (l *load) run(worker int) {
	defer l.wg.Done()
	id, token := l.signUp(fmt.Sprintf("load%d", worker))
	if token == "" {
		return // failed, and said so
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "photo.jpg")
	fw.Write(l.image)
	mw.Close()
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		switch i % 4 {
		case 0:
			l.do(http.StatusOK, "GET", "/v1/users/"+id, "", "", nil)
		case 1:
			l.do(http.StatusOK, "PATCH", "/v1/users/me", token, "application/merge-patch+json", fmt.Appendf(nil, `{"bio":"edit %d"}`, i))
		case 2:
			// An Idempotency-Key, as a client that may retry sends it.
			b := l.do(http.StatusAccepted, "POST", "/v1/photos", token, mw.FormDataContentType(), form.Bytes(),
				"Idempotency-Key", fmt.Sprintf("w%d-%d", worker, i))
			var ph struct{ ID string }
			if b != nil && json.Unmarshal(b, &ph) == nil {
				l.mu.Lock()
				l.uploads[ph.ID] = token
				l.mu.Unlock()
			}
		case 3:
			if i%12 == 3 { // sign-ups hash a password: fewer of them
				l.do(http.StatusCreated, "POST", "/v1/users", "", "application/json", fmt.Appendf(nil, `{"handle":"new%d_%d","password":"correct horse"}`, worker, i))
			}
		}
		time.Sleep(5 * time.Millisecond) // steady, not flat out
	}
}

// TestDeployUnderLoad replaces onebox five times with deploy/deploy.sh
// while client goroutines keep a steady load on it, and checks that not
// one request failed (no transport error, no unexpected status, POST and
// PATCH included) and that every accepted upload was processed exactly
// once: ready, with its two events (created, finished) and one "photo
// finished" line in the log that every process writes to.
func TestDeployUnderLoad(t *testing.T) {
	d := startDeployed(t)
	image, err := os.ReadFile(filepath.Join("testdata", "images", "formats", "jpeg_gray_hopper.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	l := &load{
		base: d.base, image: image, uploads: map[string]string{}, stop: make(chan struct{}),
		client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 8}},
	}
	const workers = 4
	for w := range workers {
		l.wg.Add(1)
		go l.run(w)
	}
	// Wait for the load to be under way, and between deploys for some
	// of it to reach the new process: counted requests, not time.
	waitRequests := func(n int64) {
		for target := l.done.Load() + n; l.done.Load() < target; time.Sleep(10 * time.Millisecond) {
			l.mu.Lock()
			failed := len(l.failures)
			l.mu.Unlock()
			if failed > 0 {
				break
			}
		}
	}
	waitRequests(40)
	pids := []int{d.pid()}
	for i := range 5 {
		before := l.done.Load()
		newBin := filepath.Join(t.TempDir(), "onebox")
		copyFile(t, os.Args[0], newBin)
		out, err := d.deploy(newBin)
		if err != nil {
			close(l.stop)
			l.wg.Wait()
			t.Fatalf("deploy %d: %v\n%s\nlog:\n%s", i+1, err, out, d.log())
		}
		pid := d.pid()
		if pid == pids[len(pids)-1] || running(pids[len(pids)-1]) {
			t.Fatalf("deploy %d: pid %d → %d, the old one running: %v\n%s", i+1, pids[len(pids)-1], pid, running(pids[len(pids)-1]), out)
		}
		pids = append(pids, pid)
		t.Logf("deploy %d: pid %d, %d requests answered during it", i+1, pid, l.done.Load()-before)
		waitRequests(40)
	}
	close(l.stop)
	l.wg.Wait()
	for _, f := range l.failures {
		t.Errorf("failed request: %s", f)
	}
	if t.Failed() {
		t.Fatalf("pids %v; log:\n%s", pids, d.log())
	}

	// Every accepted upload ends ready.
	poll := &load{base: d.base, client: l.client}
	for id, token := range l.uploads {
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
			var ph struct{ Status string }
			_ = json.Unmarshal(poll.do(http.StatusOK, "GET", "/v1/photos/"+id, token, "", nil), &ph)
			if ph.Status == "ready" {
				break
			}
			if ph.Status != "processing" || time.Now().After(deadline) {
				t.Fatalf("photo %s: %q; %v", id, ph.Status, poll.failures)
			}
		}
	}
	d.stop() // flushes the last process's log
	// ... processed exactly once, by whichever process took its job.
	finished := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(d.log()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Msg     string `json:"msg"`
			PhotoID string `json:"photo_id"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "photo finished" {
			finished[line.PhotoID]++
		}
	}
	for id := range l.uploads {
		if finished[id] != 1 {
			t.Errorf("photo %s finished %d times, want once", id, finished[id])
		}
	}
	if len(finished) != len(l.uploads) {
		t.Errorf("%d photos finished, %d uploads accepted", len(finished), len(l.uploads))
	}
	events := countRows(t, filepath.Join(d.dir, "data", "onebox.db"), "SELECT count(*) FROM events WHERE photo_id IN (SELECT id FROM photos)")
	if events != 2*len(l.uploads) {
		t.Errorf("%d photo events, want 2 for each of %d uploads (created, finished)", events, len(l.uploads))
	}
	t.Logf("%d requests, %d uploads over 5 deploys, pids %v", l.done.Load(), len(l.uploads), pids)
}

// countRows runs a count query on the SQLite database at path, read-only.
func countRows(t *testing.T, path, query string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestDeployRollback deploys a release that fails before it is ready (it
// opens and migrates the database, then cannot read its moderation
// blocklist): deploy.sh reports the failure and puts the previous binary
// back, the old process serves on without one failed request, and the
// next deploy of a good binary goes through.
func TestDeployRollback(t *testing.T) {
	d := startDeployed(t)
	l := &load{
		base: d.base, uploads: map[string]string{}, stop: make(chan struct{}),
		client: &http.Client{Timeout: time.Minute},
	}
	l.image, _ = os.ReadFile(filepath.Join("testdata", "images", "formats", "jpeg_gray_hopper.jpg"))
	l.wg.Add(2)
	go l.run(0)
	go l.run(1)
	stopLoad := func() {
		close(l.stop)
		l.wg.Wait()
		for _, f := range l.failures {
			t.Errorf("failed request: %s", f)
		}
	}

	bad := filepath.Join(t.TempDir(), "onebox")
	script := fmt.Sprintf("#!/bin/sh\nexec env ONEBOX_MODERATION_BLOCKLIST=%s %q \"$@\"\n", filepath.Join(d.dir, "missing"), os.Args[0])
	if err := os.WriteFile(bad, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	old := d.pid()
	// The bad release exits at once; DEPLOY_TIMEOUT only bounds the wait.
	out, err := d.deploy(bad, "DEPLOY_TIMEOUT=5")
	if err == nil || !strings.Contains(out, fmt.Sprintf("pid %d serves on", old)) {
		stopLoad()
		t.Fatalf("deploy of a bad release: %v\n%s", err, out)
	}
	if d.pid() != old || !running(old) {
		t.Fatalf("after the failed deploy the pid file says %d, want %d running (%v)", d.pid(), old, running(old))
	}
	installed, err := os.ReadFile(d.bin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(installed, []byte(script)) {
		t.Fatal("the bad release is still installed")
	}
	for deadline := time.Now().Add(time.Minute); !strings.Contains(d.log(), "upgrade failed; this process keeps serving"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the old process never logged the failed upgrade; log:\n%s", d.log())
		}
	}

	good := filepath.Join(t.TempDir(), "onebox")
	copyFile(t, os.Args[0], good)
	if out, err := d.deploy(good); err != nil {
		stopLoad()
		t.Fatalf("deploy after the rollback: %v\n%s\nlog:\n%s", err, out, d.log())
	}
	stopLoad()
	if d.pid() == old || l.done.Load() == 0 {
		t.Fatalf("pid %d → %d, %d requests", old, d.pid(), l.done.Load())
	}
}
