package nats_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"onebox/jobs"
	"onebox/jobs/jobstest"
	jobnats "onebox/jobs/nats"
)

func TestQueue(t *testing.T) {
	t.Parallel()
	jobstest.Run(t, func(t *testing.T) jobs.Queue { return newQueue(t, jobnats.Options{Storage: jetstream.MemoryStorage}) })
}

// connect connects to ONEBOX_TEST_NATS_URL, skipping the test when it is
// unset.
func connect(t *testing.T) *nats.Conn {
	t.Helper()
	url := os.Getenv("ONEBOX_TEST_NATS_URL")
	if url == "" {
		t.Skip("ONEBOX_TEST_NATS_URL not set")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// newQueue returns a queue on streams and subjects of the test's own,
// deleted when it ends.
func newQueue(t *testing.T, o jobnats.Options) *jobnats.Queue {
	t.Helper()
	nc := connect(t)
	name := "T" + rand.Text()[:12]
	o.Stream, o.Prefix = name, "t"+name
	q, err := jobnats.New(t.Context(), nc, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := q.Delete(context.Background()); err != nil {
			t.Errorf("deleting the streams: %v", fmt.Sprint(err))
		}
	})
	return q
}

// TestMaxDeliverAdvisory: a message whose every delivery died with its
// worker, the last one included, is stopped by its consumer's MaxDeliver;
// the advisory JetStream publishes then is captured by a stream and
// becomes a dead letter, which Redrive sends back.
func TestMaxDeliverAdvisory(t *testing.T) {
	t.Parallel()
	q := newQueue(t, jobnats.Options{Storage: jetstream.MemoryStorage, MaxDeliver: map[string]int{"k": 2}})
	sent := jobs.Message{Kind: "k", Payload: []byte(`{"n":1}`), RequestID: "req-1"}
	if err := q.Send(t.Context(), sent, jobs.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	const visibility = 100 * time.Millisecond
	var id string
	for attempt := 1; attempt <= 2; attempt++ {
		m := receiveOne(t, q, visibility)
		if m.Attempt != attempt {
			t.Fatalf("attempt %d, want %d", m.Attempt, attempt)
		}
		id = m.ID // and the worker dies
	}
	var dead []jobs.DeadMessage
	deadline := time.Now().Add(15 * time.Second)
	for len(dead) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		// JetStream stops the message, and says so, when it would
		// deliver it again: while someone asks.
		if msgs, err := q.Receive(t.Context(), "k", 1, visibility); err != nil || len(msgs) != 0 {
			t.Fatalf("Receive = %+v, %v; want nothing past MaxDeliver", msgs, err)
		}
		var err error
		if dead, err = q.Dead(t.Context(), jobs.DeadFilter{}, 10); err != nil {
			t.Fatalf("Dead: %v", err)
		}
	}
	if len(dead) != 1 {
		t.Fatalf("Dead = %+v, want the message stopped by MaxDeliver", dead)
	}
	d := dead[0]
	if d.ID != id || d.RequestID != "req-1" || string(d.Payload) != `{"n":1}` || d.Attempt != 2 || !strings.Contains(d.LastError, "MaxDeliver") {
		t.Errorf("dead %+v, want %s, attempt 2, MaxDeliver", d, id)
	}
	st, err := q.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ks := st.Kinds["k"]; ks != (jobs.KindStats{Dead: 1}) {
		t.Errorf("Stats = %+v, want dead 1 only", ks)
	}
	if n, err := q.Redrive(t.Context(), jobs.DeadFilter{}); err != nil || n != 1 {
		t.Fatalf("Redrive = %d, %v; want 1", n, err)
	}
	if m := receiveOne(t, q, visibility); m.RequestID != "req-1" || m.Attempt != 1 {
		t.Errorf("redriven %+v, want req-1 at attempt 1", m)
	}
}

func receiveOne(t *testing.T, q *jobnats.Queue, visibility time.Duration) jobs.Message {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		msgs, err := q.Receive(t.Context(), "k", 1, visibility)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if len(msgs) == 1 {
			return msgs[0]
		}
	}
	t.Fatal("no message")
	panic("unreachable")
}

// TestLeaseAcrossProcesses: two processes share a kind. The first
// receives a message and stalls past AckWait; the second receives it
// again. JetStream would apply the first's late ack, retry or
// termination to the second's delivery (its consumer settles by stream
// sequence); the queue refuses them before they are sent, and the
// second's delivery stays in flight until it acks it.
func TestLeaseAcrossProcesses(t *testing.T) {
	t.Parallel()
	a := newQueue(t, jobnats.Options{Storage: jetstream.MemoryStorage})
	b, err := jobnats.New(t.Context(), connect(t), jobnats.Options{Stream: a.StreamName(), Prefix: "t" + a.StreamName(), Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	const visibility = time.Second
	if err := a.Send(t.Context(), jobs.Message{Kind: "k"}, jobs.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	first, err := a.Receive(t.Context(), "k", 1, visibility)
	if err != nil || len(first) != 1 {
		t.Fatalf("a: Receive = %v, %v", first, err)
	}
	var second jobs.Message
	for deadline := time.Now().Add(15 * time.Second); second.ID == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("b never received the message")
		}
		ms, err := b.Receive(t.Context(), "k", 1, visibility)
		if err != nil {
			t.Fatalf("b: Receive: %v", err)
		}
		if len(ms) == 1 {
			second = ms[0]
		}
	}
	if second.ID != first[0].ID || second.Lease == first[0].Lease {
		t.Fatalf("b received %s lease %s, want %s under a new lease (a's %s)", second.ID, second.Lease, first[0].ID, first[0].Lease)
	}

	stale := first[0].Receipt()
	if err := a.Extend(t.Context(), stale, visibility); !errors.Is(err, jobs.ErrLeaseLost) {
		t.Errorf("a: Extend = %v, want ErrLeaseLost", err)
	}
	if err := a.Ack(t.Context(), stale); !errors.Is(err, jobs.ErrLeaseLost) {
		t.Errorf("a: Ack = %v, want ErrLeaseLost", err)
	}
	// The Ack forgot a's handle: whatever a sends next finds nothing.
	if err := a.Retry(t.Context(), stale, time.Now(), "late"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("a: Retry after its Ack = %v, want ErrNotFound", err)
	}
	if st, err := b.Stats(t.Context()); err != nil || st.Kinds["k"].InFlight != 1 {
		t.Errorf("after a's late calls: %+v, %v; want b's delivery in flight", st.Kinds["k"], err)
	}
	if ms, err := b.Receive(t.Context(), "k", 1, visibility); err != nil || len(ms) != 0 {
		t.Errorf("after a's late calls: Receive = %v, %v; want nothing: a's retry must not have reached the server", ms, err)
	}
	if err := b.Ack(t.Context(), second.Receipt()); err != nil {
		t.Fatalf("b: Ack: %v", err)
	}
	if st, err := b.Stats(t.Context()); err != nil || st.Kinds["k"].Queued+st.Kinds["k"].InFlight != 0 {
		t.Errorf("after b's Ack: %+v, %v; want nothing left", st.Kinds["k"], err)
	}
}

// TestSendIDs: a batch is published at once with an outcome per message.
// One that cannot be sent fails alone; a second message with an id
// already sent is confirmed and dropped; when SendIDs returns, every
// confirmed message is in the stream. The batch is longer than the
// window of publishes awaiting confirmation.
func TestSendIDs(t *testing.T) {
	t.Parallel()
	q := newQueue(t, jobnats.Options{Storage: jetstream.MemoryStorage})
	const n = 300
	var ms []jobs.IDMessage
	for i := range n {
		ms = append(ms, jobs.IDMessage{ID: fmt.Sprint("id-", i), Message: jobs.Message{Kind: "k", Payload: []byte(fmt.Sprint(i))}})
	}
	ms = append(ms,
		jobs.IDMessage{ID: "id-7", Message: jobs.Message{Kind: "k", Payload: []byte(`"dup"`)}},
		jobs.IDMessage{ID: "id-prio", Message: jobs.Message{Kind: "k"}, Options: jobs.SendOptions{Priority: 1}},
		jobs.IDMessage{ID: "", Message: jobs.Message{Kind: "k"}},
	)
	errs := q.SendIDs(t.Context(), ms)
	if len(errs) != len(ms) {
		t.Fatalf("%d outcomes for %d messages", len(errs), len(ms))
	}
	for i, err := range errs[:n+1] {
		if err != nil {
			t.Errorf("message %d (%s): %v", i, ms[i].ID, err)
		}
	}
	if err := errs[n+1]; !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("with a priority: %v, want errors.ErrUnsupported", err)
	}
	if errs[n+2] == nil {
		t.Error("with no id: no error")
	}
	msgs, err := q.Receive(t.Context(), "k", n+10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[string(m.Payload)] = true
	}
	if len(msgs) != n || len(seen) != n || seen[`"dup"`] {
		t.Errorf("the stream holds %d messages, %d distinct, dup %v; want the %d sent once each and no dup", len(msgs), len(seen), seen[`"dup"`], n)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for i, err := range q.SendIDs(ctx, ms[:2]) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("with its context done, message %d: %v, want context.Canceled", i, err)
		}
	}
}

// TestSendIDsRefused: the messages of a batch the server refuses (here, a
// stream full under DiscardNew) fail alone, and SendIDs waits to hear it.
func TestSendIDsRefused(t *testing.T) {
	t.Parallel()
	q := newQueue(t, jobnats.Options{Storage: jetstream.MemoryStorage})
	js, err := jetstream.New(connect(t))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), q.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	const room = 5
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs, cfg.Discard = room, jetstream.DiscardNew
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	var ms []jobs.IDMessage
	for i := range room + 3 {
		ms = append(ms, jobs.IDMessage{ID: fmt.Sprint("id-", i), Message: jobs.Message{Kind: "k"}})
	}
	for i, err := range q.SendIDs(t.Context(), ms) {
		if i < room && err != nil || i >= room && err == nil {
			t.Errorf("message %d of a stream with room for %d: %v", i, room, err)
		}
	}
}
