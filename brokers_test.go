package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// server is a private server process on a port of its own, which a test
// kills and starts again on the same port and files.
type server struct {
	t    *testing.T
	addr string
	bin  string
	args []string
	cmd  *exec.Cmd
}

// startServer starts bin with args, in which {port} is a free port.
func startServer(t *testing.T, bin string, args ...string) *server {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("%s not installed: skipping", bin)
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	for i, a := range args {
		if a == "{port}" {
			args[i] = port
		}
	}
	s := &server{t: t, addr: addr, bin: path, args: args}
	s.start()
	t.Cleanup(func() {
		if s.cmd != nil {
			s.kill()
		}
	})
	return s
}

// start starts the server and waits until it accepts connections.
func (s *server) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s not listening on %s after 30s", s.bin, s.addr)
		}
	}
}

// kill ends the server as a crash would.
func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

// TestBrokersRestart runs onebox with its queue and notifications on a
// private NATS server and its cache and limiter on a private Redis, and
// kills and restarts each under load: every answer is a success or a
// proper 503; onebox reconnects by itself (uploads accepted after each
// restart are processed, the new Redis gets keys); and no accepted upload
// is lost: those accepted while NATS was down wait in the outbox and the
// relay catches up, so every one ends ready.
func TestBrokersRestart(t *testing.T) {
	if os.Getenv("ONEBOX_TEST_NATS_URL") == "" {
		t.Skip("ONEBOX_TEST_NATS_URL not set: skipping the broker restarts (they run where the NATS tests run)")
	}
	natsServer := startServer(t, "nats-server", "-js", "-a", "127.0.0.1", "-p", "{port}", "-sd", t.TempDir())
	redisServer := startServer(t, "redis-server", "--bind", "127.0.0.1", "--port", "{port}", "--save", "", "--appendonly", "no")
	natsURL, redisURL := "nats://"+natsServer.addr, "redis://"+redisServer.addr
	c := startChild(t, t.TempDir(),
		"ONEBOX_QUEUE_URL="+natsURL, "ONEBOX_NOTIFY_URL="+natsURL,
		"ONEBOX_CACHE_URL="+redisURL, "ONEBOX_LIMITER_URL="+redisURL,
		"ONEBOX_RATE_UPLOAD=100000/1m")
	_, token := c.signup("brokers")
	l := startLoad(t, c, token)

	l.waitFor("before NATS stops", &l.succeeded, 10)
	natsServer.kill()
	before, failed := l.uploads(), relayErrors(c)
	// Down long enough that the relay has failed to publish (or stopped,
	// its lease on NATS lost) and uploads were accepted meanwhile: the
	// outbox is what keeps them.
	for deadline := time.Now().Add(time.Minute); l.uploads() == before || relayErrors(c) == failed; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("with NATS down: %d uploads accepted, %d relay failures; log:\n%s", l.uploads()-before, relayErrors(c)-failed, c.log)
		}
	}
	during := l.uploads() - before
	natsServer.start()
	l.waitFor("after NATS starts", &l.succeeded, 10)

	redisServer.kill()
	l.waitFor("while Redis is down", &l.succeeded, 10)
	redisServer.start()
	l.waitFor("after Redis starts", &l.succeeded, 10)
	rdb := redis.NewClient(&redis.Options{Addr: redisServer.addr})
	defer rdb.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if n, err := rdb.DBSize(context.Background()).Result(); err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("onebox wrote nothing to the restarted Redis in 30s: not reconnected")
		}
	}
	accepted := l.finish()
	for _, id := range accepted {
		if ph := c.waitPhoto(token, id); ph["status"] != "ready" {
			t.Fatalf("accepted photo %s: %v", id, ph)
		}
	}
	t.Logf("%d uploads, %d of them accepted while NATS was down, all ready", len(accepted), during)
}

// relayErrors counts the relay's failures and losses of its lease that
// the child has logged.
func relayErrors(c *child) int {
	log := c.log.String()
	return strings.Count(log, `"jobs: relay"`) + strings.Count(log, `"msg":"lease: lost, stopped; waiting for it again","lease":"onebox.relay"`)
}
