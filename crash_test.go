package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as the onebox server in a child
// process, so a test can kill it with SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("ONEBOX_TEST_CHILD") == "serve" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		err := run(ctx, []string{"serve"}, os.LookupEnv, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is one onebox process on a data dir.
type child struct {
	t         *testing.T
	cmd       *exec.Cmd
	log       *bytes.Buffer
	base, adm string
}

func startChild(t *testing.T, dataDir string) *child {
	t.Helper()
	c := &child{t: t, log: &bytes.Buffer{}, base: "http://" + freeAddr(t), adm: "http://" + freeAddr(t)}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(),
		"ONEBOX_TEST_CHILD=serve",
		"ONEBOX_ADDR="+strings.TrimPrefix(c.base, "http://"),
		"ONEBOX_ADMIN_ADDR="+strings.TrimPrefix(c.adm, "http://"),
		"ONEBOX_DATA_DIR="+dataDir,
		"ONEBOX_JOB_VISIBILITY=1s",
		"ONEBOX_HASH_CONCURRENCY=2",
		// waitPhoto polls; under -race on a loaded machine a 12 MP photo
		// takes long enough to spend the default 300 requests a minute.
		"ONEBOX_RATE_API=100000/1m",
	)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() })
	c.waitReady()
	return c
}

func (c *child) waitReady() {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get(c.adm + "/health/ready"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("child not ready; log:\n%s", c.log)
}

func (c *child) kill() {
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
	_ = c.cmd.Wait()
}

func (c *child) call(method, path, token, ct string, body io.Reader) map[string]any {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, body)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil || res.StatusCode >= 400 {
		c.t.Fatalf("%s %s: %d %v %v", method, path, res.StatusCode, m, err)
	}
	return m
}

func (c *child) upload(token, file string) string {
	c.t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		c.t.Fatal(err)
	}
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	fw, _ := w.CreateFormFile("file", filepath.Base(file))
	fw.Write(data)
	w.Close()
	return c.call("POST", "/v1/photos", token, w.FormDataContentType(), &body)["id"].(string)
}

func (c *child) waitPhoto(token, id string) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		ph := c.call("GET", "/v1/photos/"+id, token, "", nil)
		if ph["status"] != "processing" {
			return ph
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("photo %s still processing", id)
	return nil
}

// files lists the regular, non-hidden files under dir, relative to it.
func files(t *testing.T, dir string) (visible, hidden []string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(d.Name(), ".") {
			hidden = append(hidden, rel)
		} else {
			visible = append(visible, rel)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return visible, hidden
}

// TestSurvivesKill9 kills the server with SIGKILL right after a 202 and
// again in the middle of processing, and checks that each photo ends ready
// after a restart, with exactly one set of variants and no temp files.
func TestSurvivesKill9(t *testing.T) {
	photo := filepath.Join("..", "shared", "testdata", "images", "large", "photo_12mp_olympus_4032x3024.jpg")
	if _, err := os.Stat(photo); err != nil {
		t.Skipf("test image missing: %v", err)
	}
	data := t.TempDir()
	c := startChild(t, data)
	c.call("POST", "/v1/users", "", "application/json", strings.NewReader(`{"handle":"crash","password":"correct horse"}`))
	token := c.call("POST", "/v1/sessions", "", "application/json", strings.NewReader(`{"handle":"crash","password":"correct horse"}`))["token"].(string)

	// 1. Killed a moment after the 202.
	first := c.upload(token, photo)
	c.kill()

	// 2. Killed while the worker is in the middle of a photo.
	c = startChild(t, data)
	c.waitPhoto(token, first)
	second := c.upload(token, photo)
	deadline := time.Now().Add(time.Minute)
	for {
		var st struct {
			Kinds map[string]struct {
				InFlight int `json:"in_flight"`
			} `json:"kinds"`
		}
		res, err := http.Get(c.adm + "/jobs/stats")
		if err == nil {
			_ = json.NewDecoder(res.Body).Decode(&st)
			res.Body.Close()
		}
		if st.Kinds["photo.process"].InFlight > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.kill()

	c = startChild(t, data)
	// The interrupted job is still invisible (its visibility timeout has
	// not run out), so the photo must still be processing: the kill did
	// cut the work short.
	if ph := c.call("GET", "/v1/photos/"+second, token, "", nil); ph["status"] != "processing" {
		t.Fatalf("the kill came too late, the photo is %v", ph["status"])
	}
	for _, id := range []string{first, second} {
		ph := c.waitPhoto(token, id)
		if ph["status"] != "ready" || len(ph["variants"].([]any)) != 6 {
			t.Fatalf("photo %s after the crash: %v", id, ph)
		}
		visible, _ := files(t, filepath.Join(data, "media", "photos", id))
		if len(visible) != 6 {
			t.Fatalf("photo %s has %d published files, want one set of 6: %v", id, len(visible), visible)
		}
	}
	visible, _ := files(t, filepath.Join(data, "media", "photos"))
	if len(visible) != 12 {
		t.Fatalf("%d published files in all, want 12: %v", len(visible), visible)
	}
	_, hidden := files(t, filepath.Join(data, "media"))
	for _, h := range hidden {
		if strings.Contains(h, ".tmp") {
			t.Logf("temp file left by the killed Put (harmless, never served): %s", h)
		}
	}
}
