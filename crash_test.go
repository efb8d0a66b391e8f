package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"onebox/internal/pgtest"
	"onebox/internal/syncbuf"
	"onebox/internal/testimages"
	"onebox/media"
)

// TestMain lets the test binary act as the onebox server in a child
// process, so a test can kill it with SIGKILL. With
// ONEBOX_TEST_STALL_AFTER_VARIANTS=n the child publishes n variants and
// then stalls every further one, so a kill lands half-way through
// publishing.
func TestMain(m *testing.M) {
	if os.Getenv("ONEBOX_TEST_CHILD") == "serve" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		h, err := processHooks() // as main's: the deploy test hands its listeners over
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if n, err := strconv.Atoi(os.Getenv("ONEBOX_TEST_STALL_AFTER_VARIANTS")); err == nil {
			h.media = func(s media.Storage) media.Storage { return &stallAfter{Storage: s, n: int64(n)} }
		}
		err = runWith(ctx, []string{"serve"}, os.LookupEnv, os.Stdout, os.Stderr, h)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "onebox:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// stallAfter lets the first n variant Puts through and holds every later
// one, before it touches the storage, until the process dies: a kill then
// finds some variants published, the rest not started, no Put under way.
type stallAfter struct {
	media.Storage
	n    int64
	puts atomic.Int64
}

func (s *stallAfter) Put(ctx context.Context, key string, r io.Reader, contentType string) (media.Info, error) {
	if strings.HasPrefix(key, "photos/") && s.puts.Add(1) > s.n {
		<-ctx.Done()
		return media.Info{}, ctx.Err()
	}
	return s.Storage.Put(ctx, key, r, contentType)
}

// child is one onebox process on a data dir.
type child struct {
	t         *testing.T
	cmd       *exec.Cmd
	log       *syncbuf.Buffer // read while the child writes
	base, adm string
}

func startChild(t *testing.T, dataDir string, env ...string) *child {
	t.Helper()
	return startChildAt(t, freeAddr(t), freeAddr(t), dataDir, env...)
}

// startChildAt starts a child listening on addr and admin (host:port),
// as a restarted instance listens where its predecessor did.
func startChildAt(t *testing.T, addr, admin, dataDir string, env ...string) *child {
	t.Helper()
	c := &child{t: t, log: &syncbuf.Buffer{}, base: "http://" + addr, adm: "http://" + admin}
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
	c.cmd.Env = append(c.cmd.Env, env...)
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

// request makes one request with client, with the content type and the
// bearer token unless they are "", and the header pairs, and reads the
// whole answer, whatever its status.
func request(client *http.Client, method, url, token, ct string, body io.Reader, header ...string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return nil, nil, err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

// call makes one request to the child's API and decodes its JSON answer,
// which must not be an error.
func (c *child) call(method, path, token, ct string, body io.Reader) map[string]any {
	c.t.Helper()
	res, b, err := request(http.DefaultClient, method, c.base+path, token, ct, body)
	if err != nil {
		c.t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || res.StatusCode >= 400 {
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

// TestSurvivesKill9 kills the server with SIGKILL right after a 202, and
// again half-way through publishing a photo's variants (some files
// written, the rest not), and checks that each photo ends ready after a
// restart, with exactly one set of variants and no temp files: on SQLite
// in the data dir; on PostgreSQL (with ONEBOX_TEST_POSTGRES_URL) in a
// schema of its own, where the queue is too; and (with
// ONEBOX_TEST_NATS_URL) with the queue on JetStream fed by the outbox
// relay, whose kill lands between commit and publish or between publish
// and mark.
func TestSurvivesKill9(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  func(t *testing.T) []string
	}{
		{"sqlite", func(*testing.T) []string { return nil }},
		{"postgres", func(t *testing.T) []string { return []string{"ONEBOX_DATABASE_URL=" + pgtest.Schema(t, "kill -9")} }},
		{"nats", func(t *testing.T) []string {
			url := os.Getenv("ONEBOX_TEST_NATS_URL")
			if url == "" {
				t.Skip("ONEBOX_TEST_NATS_URL not set: skipping kill -9 with the queue on JetStream")
			}
			stream := "T" + rand.Text()[:12]
			t.Cleanup(func() { deleteNATSQueue(t, url, stream) })
			return []string{"ONEBOX_QUEUE_URL=" + url + "?stream=" + stream + "&prefix=t" + stream}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) { survivesKill9(t, tt.env(t)...) })
	}
}

// survivesKill9 is TestSurvivesKill9 with the backends env picks.
func survivesKill9(t *testing.T, env ...string) {
	photo := filepath.Join(t.TempDir(), "photo.jpg")
	if err := os.WriteFile(photo, testimages.Photo12MP(t), 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	published := filepath.Join(data, "media", "photos")
	c := startChild(t, data, env...)
	c.call("POST", "/v1/users", "", "application/json", strings.NewReader(`{"handle":"crash","password":"correct horse"}`))
	token := c.call("POST", "/v1/sessions", "", "application/json", strings.NewReader(`{"handle":"crash","password":"correct horse"}`))["token"].(string)

	// 1. Killed a moment after the 202.
	first := c.upload(token, photo)
	c.kill()

	// 2. Killed half-way through publishing: this child publishes 3
	// variants (of either photo) and stalls the rest.
	const stallAfter = 3
	c = startChild(t, data, append(env, fmt.Sprint("ONEBOX_TEST_STALL_AFTER_VARIANTS=", stallAfter))...)
	second := c.upload(token, photo)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		visible, _ := files(t, published)
		if len(visible) == stallAfter {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d variant files published, waited for %d; log:\n%s", len(visible), stallAfter, c.log)
		}
	}
	c.kill()

	c = startChild(t, data, env...)
	// The interrupted jobs are still invisible (their visibility timeout
	// has not run out), so the photos must still be processing: the kill
	// did cut the work short.
	for _, id := range []string{first, second} {
		if ph := c.call("GET", "/v1/photos/"+id, token, "", nil); ph["status"] != "processing" {
			t.Fatalf("the kill came too late, photo %s is %v", id, ph["status"])
		}
	}
	want := []string{"thumb.jpg", "w1024.jpg", "w128.jpg", "w2048.jpg", "w256.jpg", "w512.jpg"}
	for _, id := range []string{first, second} {
		ph := c.waitPhoto(token, id)
		if ph["status"] != "ready" {
			t.Fatalf("photo %s after the crash: %v", id, ph)
		}
		var listed []string
		for _, v := range ph["variants"].([]any) {
			listed = append(listed, path.Base(v.(map[string]any)["url"].(string)))
		}
		slices.Sort(listed)
		visible, _ := files(t, filepath.Join(published, id))
		slices.Sort(visible)
		if !slices.Equal(listed, want) || !slices.Equal(visible, want) {
			t.Fatalf("photo %s lists variants %v and has files %v, want exactly one set: %v", id, listed, visible, want)
		}
	}
	visible, _ := files(t, published)
	if len(visible) != 2*len(want) {
		t.Fatalf("%d published files in all, want %d: %v", len(visible), 2*len(want), visible)
	}
	_, hidden := files(t, filepath.Join(data, "media"))
	for _, h := range hidden {
		if strings.HasPrefix(filepath.Base(h), ".tmp") {
			t.Errorf("temp file left behind: %s", h)
		}
	}
}
