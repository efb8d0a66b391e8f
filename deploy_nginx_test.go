package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"onebox/internal/pgtest"
	"onebox/internal/testimages"
)

// nginxProof is what TestBehindNginx drives: nginx in front of two web
// instances and one worker.
type nginxProof struct {
	t      *testing.T
	front  string // nginx, http://host:port
	client *http.Client
	jpeg   []byte
}

// req is one request: where, as whom, from which client address (nginx
// and the instances believe X-Forwarded-For from 127.0.0.1).
type req struct {
	method, url, token, from string
	ct                       string
	body                     []byte
}

func (p *nginxProof) do(r req) (int, []byte, error) {
	var header []string
	if r.from != "" {
		header = []string{"X-Forwarded-For", r.from}
	}
	res, b, err := request(p.client, r.method, r.url, r.token, r.ct, bytes.NewReader(r.body), header...)
	if res == nil {
		return 0, nil, err
	}
	return res.StatusCode, b, err
}

// must makes r and decodes its JSON answer, which must have status want.
func (p *nginxProof) must(r req, want int) map[string]any {
	p.t.Helper()
	status, body, err := p.do(r)
	if err != nil || status != want {
		p.t.Fatalf("%s %s: %d %s %v, want %d", r.method, r.url, status, body, err, want)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		p.t.Fatalf("%s %s: %v", r.method, r.url, err)
	}
	return m
}

// user signs a user up and in through nginx, from an address of its own
// (the login limit is per address).
func (p *nginxProof) user(handle, from string) (id, token string) {
	p.t.Helper()
	cred := []byte(`{"handle":"` + handle + `","password":"correct horse"}`)
	id = p.must(req{method: "POST", url: p.front + "/v1/users", from: from, ct: "application/json", body: cred}, http.StatusCreated)["id"].(string)
	token = p.must(req{method: "POST", url: p.front + "/v1/sessions", from: from, ct: "application/json", body: cred}, http.StatusCreated)["token"].(string)
	return id, token
}

// upload is a POST of p's photo to base.
func (p *nginxProof) upload(base, token string) req {
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	fw, _ := w.CreateFormFile("file", "photo.jpg")
	fw.Write(p.jpeg)
	w.Close()
	return req{method: "POST", url: base + "/v1/photos", token: token, ct: w.FormDataContentType(), body: body.Bytes()}
}

// bio is the bio of user id as base serves it to token's holder.
func (p *nginxProof) bio(base, path, token string) string {
	p.t.Helper()
	return p.must(req{method: "GET", url: base + path, token: token}, http.StatusOK)["bio"].(string)
}

// startNginx runs nginx in dir with the shipped deploy/nginx.conf, its
// upstream pointed at upstreams and its server listening on listen.
func startNginx(t *testing.T, bin, dir, listen string, upstreams ...string) {
	t.Helper()
	shipped, err := os.ReadFile("deploy/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(shipped)
	// The shipped file leaves the addresses to the operator: the
	// upstream's one server, and the server's listen (nginx's default).
	var servers strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&servers, "    server %s max_fails=3 fail_timeout=2s;\n", u) // as the file advises
	}
	for old, new := range map[string]string{
		"    server 127.0.0.1:8080;\n": servers.String(),
		"\nserver {\n":                 "\nserver {\n    listen " + listen + ";\n",
	} {
		if strings.Count(conf, old) != 1 {
			t.Fatalf("deploy/nginx.conf: want one %q to point at the test's instances", old)
		}
		conf = strings.Replace(conf, old, new, 1)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // its workers write the temp files below
	}
	main := fmt.Sprintf(`daemon off;
%[2]s
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
    log_format upstream '$upstream_addr $status $request_method $uri';
    access_log %[1]s/access.log upstream;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/onebox.conf;
}
`, dir, user)
	for name, text := range map[string]string{"onebox.conf": conf, "nginx.conf": main} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // the master stops its workers
		_ = cmd.Wait()
		if t.Failed() {
			errs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			lines := strings.Split(string(errs), "\n")
			t.Logf("nginx's error log, the first lines:\n%s", strings.Join(lines[:min(len(lines), 20)], "\n"))
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res, err := http.Get("http://" + listen + "/health/ready")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			errs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx not serving: %v\n%s%s", err, out.String(), errs)
		}
	}
}

// servedBy counts the requests nginx in dir sent to each upstream, from
// its access log (a request retried on another counts for each).
func servedBy(t *testing.T, dir string) map[string]int {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(dir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]int{}
	for line := range strings.Lines(string(log)) {
		addrs, _, _ := strings.Cut(line, " ")
		for addr := range strings.SplitSeq(addrs, ",") {
			if addr = strings.TrimSpace(addr); addr != "" && addr != "-" {
				served[addr]++
			}
		}
	}
	return served
}

// TestBehindNginx is the proof that several instances behave as one
// service: nginx (Debian's, ONEBOX_TEST_NGINX is its path) with
// deploy/nginx.conf in front of two web instances and one worker, which
// share PostgreSQL (a schema of their own), JetStream (a stream of its
// own, fed by the web instances' relays), a NATS notification hub (a
// subject of its own; it also carries the in-process caches'
// invalidations), the Redis limiter (buckets keyed by this run's client
// addresses) and S3 media (a bucket of its own on moto). Under load: both
// web instances serve; an upload through one is processed by the worker
// and announced on a stream held through the other; a write reads back
// at once to its writer and to everyone once broadcast; the login limit
// holds across instances; and no request fails while each web instance
// in turn is stopped (SIGTERM) and started again.
func TestBehindNginx(t *testing.T) {
	bin := os.Getenv("ONEBOX_TEST_NGINX")
	if bin == "" {
		t.Skip("ONEBOX_TEST_NGINX (the path of nginx) unset: the proof behind nginx is skipped")
	}
	backend := map[string]string{}
	for _, env := range []string{"ONEBOX_TEST_NATS_URL", "ONEBOX_TEST_REDIS_URL", "ONEBOX_TEST_S3_URL"} {
		if backend[env] = os.Getenv(env); backend[env] == "" {
			t.Fatalf("ONEBOX_TEST_NGINX is set: the proof needs %s too", env)
		}
	}
	db := pgtest.Schema(t, "nginx")
	run := strings.ToLower(rand.Text()[:10])
	// Client addresses of this run's own: the login limit's buckets in
	// the shared Redis outlive the run.
	// (IPv6 from the documentation prefix, each in a /64 of its own.)
	var clients atomic.Int64
	prefix := mrand.Uint32()
	client := func() string {
		n := clients.Add(1)
		return fmt.Sprintf("2001:db8:%x:%x::1", prefix&0xffff, n)
	}
	natsURL := backend["ONEBOX_TEST_NATS_URL"]
	stream := "NGINX_" + strings.ToUpper(run)
	t.Cleanup(func() { deleteNATSQueue(t, natsURL, stream) }) // after the children stop
	bucket := "onebox-nginx-" + run
	s3URL := backend["ONEBOX_TEST_S3_URL"]
	if r, err := http.NewRequest("PUT", s3URL+"/"+bucket, nil); err != nil {
		t.Fatal(err)
	} else if res, err := http.DefaultClient.Do(r); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("creating bucket %s on %s: %v %v", bucket, s3URL, res, err)
	}
	env := []string{
		"ONEBOX_DATABASE_URL=" + db,
		"ONEBOX_QUEUE_URL=" + natsURL + "?stream=" + stream + "&prefix=t" + stream,
		"ONEBOX_NOTIFY_URL=" + natsURL + "?subject=onebox.nginx." + run,
		"ONEBOX_LIMITER_URL=" + backend["ONEBOX_TEST_REDIS_URL"],
		"ONEBOX_MEDIA_URL=s3://" + bucket + "/media?region=us-east-1&endpoint=" + url.QueryEscape(s3URL),
		"ONEBOX_CACHE_URL=memory://",
		"ONEBOX_CACHE_TTL=1h", // a stale entry lasts: only the broadcast ends it
		"ONEBOX_TRUSTED_PROXIES=127.0.0.1/32",
		"ONEBOX_RATE_AUTH=6/1h",
		"ONEBOX_RATE_UPLOAD=100000/1m",
		"ONEBOX_SHUTDOWN_DELAY=3s", // above the upstream's keepalive_timeout
		"ONEBOX_ACCESS_LOG=false",
	}
	webAddrs := [][2]string{{freeAddr(t), freeAddr(t)}, {freeAddr(t), freeAddr(t)}}
	web := []*child{startChildAt(t, webAddrs[0][0], webAddrs[0][1], t.TempDir(), append(env, "ONEBOX_ROLE=web")...)}
	web = append(web, startChildAt(t, webAddrs[1][0], webAddrs[1][1], t.TempDir(), append(env, "ONEBOX_ROLE=web")...))
	worker := startChild(t, t.TempDir(), append(env, "ONEBOX_ROLE=worker")...)
	dir := t.TempDir()
	front := freeAddr(t)
	startNginx(t, bin, dir, front, webAddrs[0][0], webAddrs[1][0])

	jpeg, err := testimages.PhotoJPEG(160, 120, 1, 85)
	if err != nil {
		t.Fatal(err)
	}
	p := &nginxProof{t: t, front: "http://" + front, jpeg: jpeg,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	a, b := web[0].base, web[1].base
	outer := t // children restarted in a subtest live on after it

	t.Run("upload through one, announced through the other", func(t *testing.T) {
		_, token := p.user("sse", client())
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		sr, _ := http.NewRequestWithContext(ctx, "GET", b+"/v1/users/me/events", nil)
		sr.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(sr)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("event stream through B: %v %v", res, err)
		}
		defer res.Body.Close()
		lines := make(chan string)
		go func() {
			defer close(lines)
			for sc := bufio.NewScanner(res.Body); sc.Scan(); {
				select {
				case lines <- sc.Text():
				case <-ctx.Done():
					return
				}
			}
		}()
		// The first photo may be read from the store when the stream
		// starts; once it is announced, the stream reads again only when
		// the hub wakes it or at its keep-alive, every 15 s, so the second
		// one, announced sooner, crossed the hub.
		for i := range 2 {
			id := p.must(p.upload(a, token), http.StatusAccepted)["id"].(string)
			deadline := time.After(10 * time.Second)
			for done := false; !done; {
				select {
				case line, ok := <-lines:
					if !ok {
						t.Fatalf("the stream through B ended without photo %s ready: %v", id, ctx.Err())
					}
					done = strings.HasPrefix(line, "data:") && strings.Contains(line, id) && strings.Contains(line, `"ready"`)
				case <-deadline:
					if i > 0 {
						t.Fatalf("photo %s not announced through B within 10 s: its hub did not wake the stream", id)
					}
				}
			}
		}
	})

	t.Run("a write is read back at once by its writer, by others once broadcast", func(t *testing.T) {
		writerID, writer := p.user("writer", client())
		_, reader := p.user("reader", client())
		var slowest time.Duration
		const rounds = 20
		for i := range rounds {
			for _, base := range []string{a, b} { // each instance caches the profile
				p.bio(base, "/v1/users/"+writerID, reader)
			}
			bio := fmt.Sprintf("bio %d", i)
			p.must(req{method: "PATCH", url: p.front + "/v1/users/me", token: writer, ct: "application/json", body: []byte(`{"bio":"` + bio + `"}`)}, http.StatusOK)
			written := time.Now()
			for _, base := range []string{a, b} {
				if got := p.bio(base, "/v1/users/me", writer); got != bio {
					t.Fatalf("the writer reads %q from %s right after writing %q", got, base, bio)
				}
			}
			for _, base := range []string{a, b} {
				for deadline := written.Add(10 * time.Second); p.bio(base, "/v1/users/"+writerID, reader) != bio; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("%s still serves the old profile 10s after the write (the cache TTL is 1h: no invalidation came)", base)
					}
				}
			}
			slowest = max(slowest, time.Since(written))
		}
		t.Logf("a profile write was fresh on both instances within %v (slowest of %d, reads by polling included)", slowest, rounds)
	})

	t.Run("the login limit is shared by the instances", func(t *testing.T) {
		const limit = 6 // ONEBOX_RATE_AUTH
		allowed, from := 0, client()
		for i := range 2 * limit {
			base := []string{a, b}[i%2]
			status, body, err := p.do(req{method: "POST", url: base + "/v1/sessions", from: from, ct: "application/json", body: fmt.Appendf(nil, `{"handle":"nobody%d","password":"wrong"}`, i)}) // the per-handle limit stays out of it
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusTooManyRequests {
				allowed++
			} else if !bytes.Contains(body, []byte("(auth policy)")) {
				t.Fatalf("429 from another policy: %s", body)
			}
		}
		if allowed != limit {
			t.Errorf("%d of %d logins from one address were let through by the two instances, want %d (one budget)", allowed, 2*limit, limit)
		}
	})

	t.Run("no request fails while each web instance restarts", func(t *testing.T) {
		const users = 6
		type loadUser struct{ id, token string }
		us := make([]loadUser, users)
		for i := range us {
			us[i].id, us[i].token = p.user(fmt.Sprintf("load%d", i), client())
		}
		var requests, failures atomic.Int64
		var mu sync.Mutex
		var failed []string
		var uploads []string
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, u := range us {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					var r req
					want := http.StatusOK
					switch i % 12 { // an upload in 12 requests: the worker keeps up
					case 0:
						r = req{method: "GET", url: p.front + "/v1/users/me", token: u.token}
					case 1:
						r = req{method: "PATCH", url: p.front + "/v1/users/me", token: u.token, ct: "application/json", body: fmt.Appendf(nil, `{"bio":"%d"}`, i)}
					case 2:
						r = req{method: "GET", url: p.front + "/v1/users/" + u.id, token: u.token}
					case 3:
						r, want = p.upload(p.front, u.token), http.StatusAccepted
					default:
						r = req{method: "GET", url: p.front + "/v1/users/" + u.id, token: u.token}
					}
					status, body, err := p.do(r)
					requests.Add(1)
					if err != nil || status != want {
						failures.Add(1)
						mu.Lock()
						failed = append(failed, fmt.Sprintf("%s %s: %d %s %v", r.method, r.url, status, body, err))
						mu.Unlock()
						continue
					}
					if want == http.StatusAccepted {
						var m map[string]any
						_ = json.Unmarshal(body, &m)
						mu.Lock()
						uploads = append(uploads, u.token+" "+m["id"].(string))
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(time.Second)
		for i, c := range web {
			if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			_ = c.cmd.Wait()
			// Its listener closed once nginx stopped connecting (the 503s
			// took it out), not on the deadline with connections arriving:
			// those in the accept queue would be reset, a POST on one lost.
			if log := c.log.String(); !strings.Contains(log, `"msg":"drained"`) || strings.Contains(log, "connections kept arriving") {
				t.Errorf("%s did not stop accepting in a quiet moment:\n%s", c.base, log)
			}
			web[i] = startChildAt(outer, webAddrs[i][0], webAddrs[i][1], t.TempDir(), append(env, "ONEBOX_ROLE=web")...)
			// nginx took the stopped instance out for fail_timeout; the
			// next may stop only once this one serves through nginx again,
			// or nginx has none left.
			before := servedBy(t, dir)[webAddrs[i][0]]
			for deadline := time.Now().Add(30 * time.Second); servedBy(t, dir)[webAddrs[i][0]] == before; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("nginx sends nothing to the restarted %s", webAddrs[i][0])
				}
			}
		}
		close(stop)
		wg.Wait()
		t.Logf("%d requests through nginx during two rolling restarts, %d failed, %d uploads", requests.Load(), failures.Load(), len(uploads))
		if n := failures.Load(); n > 0 {
			t.Errorf("%d requests failed, the first ones:\n%s", n, strings.Join(failed[:min(len(failed), 10)], "\n"))
		}
		// Every accepted upload is processed, by the worker.
		for _, tu := range uploads {
			token, id, _ := strings.Cut(tu, " ")
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
				ph := p.must(req{method: "GET", url: p.front + "/v1/photos/" + id, token: token}, http.StatusOK)
				if ph["status"] == "ready" {
					break
				}
				if ph["status"] != "processing" || time.Now().After(deadline) {
					t.Fatalf("accepted upload %s: %v", id, ph)
				}
			}
		}
		if n := worker.jobsDone(); n < len(uploads) {
			t.Errorf("the worker processed %d photos, want at least the %d accepted", n, len(uploads))
		}
		for _, c := range web {
			if n := c.jobsDone(); n != 0 {
				t.Errorf("web instance %s processed %d photos, want none", c.base, n)
			}
		}
	})

	// Both instances served, as nginx logged it.
	served := servedBy(t, dir)
	for _, w := range webAddrs {
		if served[w[0]] == 0 {
			t.Errorf("nginx sent nothing to %s: %v", w[0], served)
		}
	}
	t.Logf("requests nginx sent to each instance: %v", served)
}
