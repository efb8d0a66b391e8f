package main

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"onebox/internal/pgtest"
	"onebox/internal/testimages"
)

// holds reports whether the child has logged that it holds the lease.
func (c *child) holds(lease string) bool {
	for l := range strings.Lines(c.log.String()) {
		if strings.Contains(l, "lease: held, running") && strings.Contains(l, `"`+lease+`"`) {
			return true
		}
	}
	return false
}

// TestRelayLeaseHandsOverOnKill runs two instances on one PostgreSQL
// schema with the queue on JetStream: one of them relays the outbox
// (it holds the lease); killed with SIGKILL, its lock goes with its
// connection and the other takes over, and relays an upload it accepts.
func TestRelayLeaseHandsOverOnKill(t *testing.T) {
	natsURL := os.Getenv("ONEBOX_TEST_NATS_URL")
	if natsURL == "" {
		t.Skip("ONEBOX_TEST_NATS_URL not set: skipping the lease hand-over")
	}
	db := pgtest.Schema(t, "lease")
	stream := "T" + rand.Text()[:12]
	t.Cleanup(func() { deleteNATSQueue(t, natsURL, stream) })
	mediaDir := t.TempDir() // shared: a job may run on either instance
	env := []string{
		"ONEBOX_DATABASE_URL=" + db, "ONEBOX_QUEUE_URL=" + natsURL + "?stream=" + stream + "&prefix=t" + stream,
		"ONEBOX_MEDIA_URL=file:" + mediaDir, "ONEBOX_CACHE_URL=none",
	}
	children := []*child{startChild(t, t.TempDir(), env...), startChild(t, t.TempDir(), env...)}
	holder := -1
	for deadline := time.Now().Add(30 * time.Second); holder < 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no instance holds the relay's lease; logs:\n%s\n---\n%s", children[0].log, children[1].log)
		}
		for i, c := range children {
			if c.holds("onebox.relay") {
				holder = i
			}
		}
	}
	other := children[1-holder]
	if other.holds("onebox.relay") {
		t.Fatal("both instances hold the relay's lease")
	}
	children[holder].kill()
	for deadline := time.Now().Add(30 * time.Second); !other.holds("onebox.relay"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the relay's lease not taken over 30s after its holder died; log:\n%s", other.log)
		}
	}
	_, token := other.signup("survivor")
	jpeg, err := testimages.PhotoJPEG(64, 48, 1, 85)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "p.jpg")
	if err := os.WriteFile(file, jpeg, 0o600); err != nil {
		t.Fatal(err)
	}
	if ph := other.waitPhoto(token, other.upload(token, file)); ph["status"] != "ready" {
		t.Fatalf("photo after the hand-over: %v", ph)
	}
}
