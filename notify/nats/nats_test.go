package nats_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"onebox/notify"
	notifynats "onebox/notify/nats"
	"onebox/notify/notifytest"
)

const env = "ONEBOX_TEST_NATS_URL"

func serverURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv(env)
	if url == "" {
		t.Skipf("%s not set: skipping the NATS notification hub tests", env)
	}
	return url
}

// subjects gives each test's hubs a subject of their own: the tests run
// at once on one server.
var subjects atomic.Int64

func newSubject() string {
	return fmt.Sprintf("onebox.test.%d.%d", time.Now().UnixNano(), subjects.Add(1))
}

// open opens a hub on subject and waits until it is connected: a server
// set but unreachable fails the test.
func open(t *testing.T, url, subject string) *notifynats.Hub {
	t.Helper()
	h, err := notifynats.Open(url, notifynats.Options{Subject: subject, ReconnectWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	notifytest.WaitConnected(t, h)
	return h
}

func TestConformance(t *testing.T) {
	t.Parallel()
	url := serverURL(t)
	notifytest.Run(t, func(t *testing.T) notify.Hub { return open(t, url, newSubject()) })
}

func TestShared(t *testing.T) {
	t.Parallel()
	url := serverURL(t)
	notifytest.RunShared(t, func(t *testing.T) (notify.Hub, notify.Hub) {
		s := newSubject()
		return open(t, url, s), open(t, url, s)
	})
}

// TestReconnect restarts a private server: the hub drops its subscribers
// when the connection goes, refuses new ones while it is away, and
// serves again once it reconnects.
func TestReconnect(t *testing.T) {
	t.Parallel()
	serverURL(t) // runs where the NATS tests run
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Skip("nats-server not on PATH: skipping the reconnection test")
	}
	port := freePort(t)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	server := start()
	h := open(t, "nats://127.0.0.1:"+strconv.Itoa(port), newSubject())
	notifytest.Reconnect(t, h, func(t *testing.T) {
		_ = server.Process.Kill()
		_ = server.Wait()
	}, func(t *testing.T) {
		if _, _, err := h.Subscribe(t.Context(), "user:1"); err == nil {
			t.Fatal("Subscribe succeeded without a server")
		}
		start()
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
