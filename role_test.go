package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"onebox/internal/testimages"
)

// readiness is an instance's readiness answer.
func (c *child) readiness(base string) (status int, role string, checks map[string]string) {
	c.t.Helper()
	res, err := http.Get(base + "/health/ready")
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	var rep struct {
		Role   string
		Checks map[string]string
	}
	if err := json.NewDecoder(res.Body).Decode(&rep); err != nil {
		c.t.Fatal(err)
	}
	return res.StatusCode, rep.Role, rep.Checks
}

// jobsDone is how many process jobs the instance finished, from its
// metrics.
func (c *child) jobsDone() int {
	c.t.Helper()
	res, err := http.Get(c.adm + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	m := regexp.MustCompile(`(?m)^onebox_jobs_done_total\{kind="photo.process",outcome="ok"\} (\d+)$`).FindSubmatch(body)
	if m == nil {
		c.t.Fatalf("no process jobs in the metrics:\n%s", body)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestRoles runs a web instance and a worker instance on one data
// directory (SQLite, which two processes share, and local media): uploads
// through the web instance wait for a worker, the worker processes every
// one of them, its public listener serves only health, and each one's
// readiness names its role and checks what it runs.
func TestRoles(t *testing.T) {
	dir := t.TempDir()
	web := startChild(t, dir, "ONEBOX_ROLE=web")
	status, role, checks := web.readiness(web.base)
	if status != http.StatusOK || role != "web" {
		t.Fatalf("web readiness: %d, role %q", status, role)
	}
	if _, ok := checks["jobs"]; ok {
		t.Fatalf("web readiness checks the workers it does not run: %v", checks)
	}

	_, token := web.signup("alice")
	photo := filepath.Join(t.TempDir(), "photo.jpg")
	jpeg, err := testimages.PhotoJPEG(320, 240, 1, 85)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(photo, jpeg, 0o600); err != nil {
		t.Fatal(err)
	}
	const uploads = 3
	ids := make([]string, uploads)
	for i := range ids {
		ids[i] = web.upload(token, photo)
	}

	worker := startChild(t, dir, "ONEBOX_ROLE=worker")
	status, role, checks = worker.readiness(worker.base) // on the public listener
	if status != http.StatusOK || role != "worker" {
		t.Fatalf("worker readiness: %d, role %q", status, role)
	}
	if _, ok := checks["jobs"]; !ok {
		t.Fatalf("worker readiness does not check its workers: %v", checks)
	}
	for _, path := range []string{"/v1/users/me", "/"} {
		res, err := http.Get(worker.base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Fatalf("the worker's public listener answers GET %s with %d, want 404", path, res.StatusCode)
		}
	}

	for _, id := range ids {
		if ph := web.waitPhoto(token, id); ph["status"] != "ready" {
			t.Fatalf("photo %s: %v", id, ph)
		}
	}
	if got, want := worker.jobsDone(), uploads; got != want {
		t.Errorf("the worker processed %d photos, want %d", got, want)
	}
	if got := web.jobsDone(); got != 0 {
		t.Errorf("the web instance processed %d photos, want 0", got)
	}
}
