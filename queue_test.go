package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"onebox/jobs"
	jobnats "onebox/jobs/nats"
)

// TestJobsCommandOnNATS: with ONEBOX_QUEUE_URL=nats://…, onebox jobs
// dead lists JetStream's dead letters and jobs retry redrives them.
func TestJobsCommandOnNATS(t *testing.T) {
	t.Parallel()
	url := os.Getenv("ONEBOX_TEST_NATS_URL")
	if url == "" {
		t.Skip("ONEBOX_TEST_NATS_URL not set")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	stream := "T" + rand.Text()[:12]
	q, err := jobnats.New(t.Context(), nc, jobnats.Options{Stream: stream, Prefix: "t" + stream})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Delete(context.Background()) })
	if err := q.Send(t.Context(), jobs.Message{Kind: "k", RequestID: "req-dead"}, jobs.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	msgs, err := q.Receive(t.Context(), "k", 1, time.Minute)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Receive = %v, %v", msgs, err)
	}
	if err := q.DeadLetter(t.Context(), msgs[0].Receipt(), "broken"); err != nil {
		t.Fatal(err)
	}

	env := map[string]string{"ONEBOX_QUEUE_URL": url + "?stream=" + stream + "&prefix=t" + stream, "ONEBOX_DATA_DIR": t.TempDir()}
	out, _, err := runCLI(t, []string{"jobs", "dead"}, env)
	if err != nil {
		t.Fatalf("jobs dead: %v", err)
	}
	var d jobs.DeadMessage
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.RequestID != "req-dead" || d.LastError != "broken" {
		t.Fatalf("jobs dead = %q (%v), want the dead letter", out, err)
	}
	if out, _, err = runCLI(t, []string{"jobs", "retry", "-all"}, env); err != nil || !strings.HasPrefix(out, "1 job(s)") {
		t.Fatalf("jobs retry -all = %q, %v", out, err)
	}
	if msgs, err := q.Receive(t.Context(), "k", 1, time.Minute); err != nil || len(msgs) != 1 || msgs[0].RequestID != "req-dead" {
		t.Errorf("after retry: Receive = %+v, %v; want the job back", msgs, err)
	}
}

// deleteNATSQueue deletes the streams of a queue a test's child created.
func deleteNATSQueue(t *testing.T, url, stream string) {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Errorf("deleting streams %s: %v", stream, err)
		return
	}
	defer nc.Close()
	q, err := jobnats.New(context.Background(), nc, jobnats.Options{Stream: stream, Prefix: "t" + stream})
	if err == nil {
		err = q.Delete(context.Background())
	}
	if err != nil {
		t.Errorf("deleting streams %s: %v", stream, err)
	}
	// The leases' bucket, if onebox made one (SQLite store).
	js, err := jetstream.New(nc)
	if err == nil {
		err = js.DeleteKeyValue(context.Background(), stream+"_leases")
	}
	if err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("deleting the leases of %s: %v", stream, err)
	}
}

// TestQueueURLAhead: a bad ?ahead= on ONEBOX_QUEUE_URL stops serve at
// start, naming the setting, before it reaches for the broker.
func TestQueueURLAhead(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"-1", "lots"} {
		env := map[string]string{"ONEBOX_QUEUE_URL": "nats://127.0.0.1:1?ahead=" + v, "ONEBOX_DATA_DIR": t.TempDir(),
			"ONEBOX_ADDR": "127.0.0.1:0", "ONEBOX_ADMIN_ADDR": ""}
		_, _, err := runCLI(t, []string{"serve"}, env)
		if err == nil || !strings.Contains(err.Error(), "ONEBOX_QUEUE_URL: ahead") {
			t.Errorf("serve with ?ahead=%s: %v, want an error naming ONEBOX_QUEUE_URL's ahead", v, err)
		}
	}
}
