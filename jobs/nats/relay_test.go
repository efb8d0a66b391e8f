package nats_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	_ "modernc.org/sqlite"

	"onebox/jobs"
	jobnats "onebox/jobs/nats"
	jobsqlite "onebox/jobs/sqlite"
)

// The relay's crash test. A child process commits jobs to a SQLite
// outbox, as the store does, and relays them to JetStream; the test kills
// it with SIGKILL at a chosen point, then relays what is left itself and
// reads the stream: every committed job is there exactly once.
const (
	childEnv  = "ONEBOX_RELAY_CHILD" // mode,db path,stream
	relayJobs = 10
	relayKind = "relay.k"
	// childVisibility: rows the child took come back to the test's relay
	// after it.
	childVisibility = 300 * time.Millisecond
)

func TestRelaySurvivesKill9(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode string
		want string // the child's line after which it is killed
	}{
		// Committed, nothing published yet.
		{"committed", "committed"},
		// Three published, none marked sent: resent, and dropped as
		// duplicates by their message ids.
		{"published", "published 3"},
		// A batch of four published at once (jobs.BatchIDSender), none
		// marked sent: the same, for a batch.
		{"batch", "published batch of 4"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			q := newQueue(t, jobnats.Options{Storage: jetstream.MemoryStorage})
			stream := q.StreamName()
			db := filepath.Join(t.TempDir(), "outbox.db")
			outbox := openOutbox(t, db)

			cmd := exec.Command(os.Args[0], "-test.run=^TestRelayChild$")
			cmd.Env = append(os.Environ(), childEnv+"="+tt.mode+","+db+","+stream)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(out)
			for sc.Scan() && sc.Text() != tt.want {
			}
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			_ = cmd.Wait()

			relay := jobs.NewRelay(outbox, q, jobs.RelayOptions{Visibility: childVisibility})
			drain(t, relay, outbox)

			var got []string
			for {
				msgs, err := q.Receive(t.Context(), relayKind, 100, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				if len(msgs) == 0 {
					break
				}
				for _, m := range msgs {
					got = append(got, string(m.Payload)+" of "+m.FairKey)
				}
			}
			slices.Sort(got)
			var want []string
			for i := range relayJobs {
				want = append(want, fmt.Sprint(i, " of ", relayOwner(i)))
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("jobs in the stream %v, want each of %v once", got, want)
			}
		})
	}
}

// drain relays until the outbox holds no row of relayKind, waiting for
// rows taken and not marked sent to come back after their visibility.
func drain(t *testing.T, relay *jobs.Relay, outbox jobs.Consumer) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := relay.Once(t.Context()); err != nil {
			t.Fatalf("relay: %v", err)
		}
		st, err := outbox.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if ks := st.Kinds[relayKind]; ks.Queued+ks.InFlight == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox still holds %+v", st.Kinds[relayKind])
		}
	}
}

// relayOwner is the fair key of relayed job i: it must reach the broker.
func relayOwner(i int) string { return fmt.Sprint("owner-", i%3) }

// TestRelayChild is the child process of TestRelaySurvivesKill9.
func TestRelayChild(t *testing.T) {
	env := os.Getenv(childEnv)
	if env == "" {
		t.Skip("the child of TestRelaySurvivesKill9")
	}
	parts := strings.SplitN(env, ",", 3)
	mode, db, stream := parts[0], parts[1], parts[2]
	ctx := context.Background()
	writer := openDB(t, db, "_txlock=immediate")
	writer.SetMaxOpenConns(1)
	sender := jobsqlite.NewSender(writer)
	for i := range relayJobs {
		tx, err := writer.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := sender.SendTx(ctx, tx, jobs.Message{Kind: relayKind, Payload: json.RawMessage(fmt.Sprint(i)), FairKey: relayOwner(i)}, jobs.SendOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("committed")
	if mode == "committed" {
		select {} // killed here
	}
	nc, err := nats.Connect(os.Getenv("ONEBOX_TEST_NATS_URL"))
	if err != nil {
		t.Fatal(err)
	}
	q, err := jobnats.New(ctx, nc, jobnats.Options{Stream: stream, Prefix: "t" + stream, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	outbox := jobsqlite.New(writer, openDB(t, db, "_pragma=query_only(1)"), jobsqlite.Options{})
	var broker jobs.IDSender = &stopAfter{IDSender: q, n: 3}
	if mode == "batch" {
		broker = stopAfterBatch{q}
	}
	relay := jobs.NewRelay(outbox, broker, jobs.RelayOptions{Visibility: childVisibility, Batch: 4})
	_, _ = relay.Once(ctx)
	t.Fatal("not killed")
}

// stopAfterBatch publishes a batch through the real broker, says so and
// blocks: the point where the test kills the process.
type stopAfterBatch struct{ *jobnats.Queue }

func (s stopAfterBatch) SendIDs(ctx context.Context, ms []jobs.IDMessage) []error {
	errs := s.Queue.SendIDs(ctx, ms)
	if err := errors.Join(errs...); err != nil {
		return errs
	}
	fmt.Println("published batch of", len(ms))
	select {} // killed here
}

// stopAfter publishes through the real broker and, after n publishes,
// says so and blocks: the point where the test kills the process.
type stopAfter struct {
	jobs.IDSender
	n, sent int
}

func (s *stopAfter) SendID(ctx context.Context, id string, m jobs.Message, o jobs.SendOptions) error {
	if err := s.IDSender.SendID(ctx, id, m, o); err != nil {
		return err
	}
	s.sent++
	if s.sent == s.n {
		fmt.Println("published", s.n)
		select {} // killed here
	}
	return nil
}

func openOutbox(t *testing.T, path string) *jobsqlite.Queue {
	writer := openDB(t, path, "_txlock=immediate")
	writer.SetMaxOpenConns(1)
	if _, err := writer.Exec(jobsqlite.Schema + ";" + jobsqlite.FairSchema + ";" + jobsqlite.RankedSchema + ";" + jobsqlite.TurnSchema); err != nil {
		t.Fatal(err)
	}
	return jobsqlite.New(writer, openDB(t, path, "_pragma=query_only(1)"), jobsqlite.Options{})
}

func openDB(t *testing.T, path, extra string) *sql.DB {
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&"+extra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// filledOutbox is a new outbox holding relayJobs jobs of relayKind, with
// payloads 0 to relayJobs-1.
func filledOutbox(t *testing.T) *jobsqlite.Queue {
	outbox := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"))
	for i := range relayJobs {
		if err := outbox.Send(t.Context(), jobs.Message{Kind: relayKind, Payload: json.RawMessage(fmt.Sprint(i))}, jobs.SendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return outbox
}

// stallingAck is an outbox whose first Ack waits for stall to return: a
// relay that paused between publishing its rows and marking them sent.
type stallingAck struct {
	*jobsqlite.Queue
	stall func()
	once  sync.Once
}

func (s *stallingAck) Ack(ctx context.Context, rs ...jobs.Receipt) error {
	s.once.Do(s.stall)
	return s.Queue.Ack(ctx, rs...)
}

// TestRelayLeaseLost: a relay that stalls past its visibility after
// publishing loses its rows to another relay, which has taken them and not
// yet marked them sent. The stalled relay's late marks are refused, not
// counted as sent and not an error; the other relay marks them.
func TestRelayLeaseLost(t *testing.T) {
	t.Parallel()
	q := newQueue(t, jobnats.Options{Storage: jetstream.MemoryStorage})
	outbox := filledOutbox(t)
	const visibility = 300 * time.Millisecond
	var taken []jobs.Message
	stalled := jobs.NewRelay(&stallingAck{Queue: outbox, stall: func() {
		time.Sleep(visibility + 100*time.Millisecond)
		var err error
		if taken, err = outbox.Receive(t.Context(), relayKind, 100, visibility); err != nil {
			t.Errorf("the other relay: %v", err)
		}
	}}, q, jobs.RelayOptions{Visibility: visibility})

	sent, err := stalled.Once(t.Context())
	if err != nil || sent != 0 {
		t.Errorf("the stalled relay: sent %d, %v; want 0 and no error: its rows were taken", sent, err)
	}
	if len(taken) != relayJobs {
		t.Fatalf("the other relay took %d rows, want %d", len(taken), relayJobs)
	}
	rs := make([]jobs.Receipt, len(taken))
	for i, m := range taken {
		rs[i] = m.Receipt()
	}
	if err := outbox.Ack(t.Context(), rs...); err != nil {
		t.Errorf("the other relay's marks: %v", err)
	}
	if st, err := outbox.Stats(t.Context()); err != nil || st.Kinds[relayKind].Queued+st.Kinds[relayKind].InFlight != 0 {
		t.Errorf("outbox after both: %+v, %v; want empty", st.Kinds[relayKind], err)
	}
	msgs, err := q.Receive(t.Context(), relayKind, 100, time.Minute)
	if err != nil || len(msgs) != relayJobs {
		t.Errorf("stream holds %d jobs, %v; want each of the %d once", len(msgs), err, relayJobs)
	}
}

// TestRelayAheadKeepsTurns: JetStream serves a kind in arrival order, so
// a relay that moved Alice's whole backlog to it would put Bob's later
// job behind all of it. With RelayOptions.Ahead the backlog stays in the
// outbox, which serves owners in turn: Bob's job waits for the Ahead jobs
// already in the broker and Alice's next, not for her backlog.
func TestRelayAheadKeepsTurns(t *testing.T) {
	t.Parallel()
	const ahead, backlog = 2, 10
	tests := []struct {
		name    string
		ahead   map[string]int
		maxWait int // jobs received before Bob's
	}{
		{"ahead", map[string]int{relayKind: ahead}, ahead + 1},
		// Everything at once: the guard that the case above shows
		// something.
		{"unbounded", nil, backlog},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := newQueue(t, jobnats.Options{Storage: jetstream.MemoryStorage})
			outbox := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"))
			send := func(key string, n int) {
				for i := range n {
					m := jobs.Message{Kind: relayKind, FairKey: key, Payload: json.RawMessage(fmt.Sprintf(`"%s%d"`, key, i))}
					if err := outbox.Send(t.Context(), m, jobs.SendOptions{}); err != nil {
						t.Fatal(err)
					}
				}
			}
			relay := jobs.NewRelay(outbox, q, jobs.RelayOptions{Ahead: tt.ahead})
			once := func() {
				if _, err := relay.Once(t.Context()); err != nil {
					t.Fatalf("relay: %v", err)
				}
			}
			send("alice", backlog)
			once()
			send("bob", 1)
			var got []string
			for deadline := time.Now().Add(15 * time.Second); len(got) < backlog+1; {
				if time.Now().After(deadline) {
					t.Fatalf("received only %v", got)
				}
				once()
				msgs, err := q.Receive(t.Context(), relayKind, 1, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range msgs {
					got = append(got, strings.Trim(string(m.Payload), `"`))
					if err := q.Ack(t.Context(), m.Receipt()); err != nil {
						t.Fatal(err)
					}
				}
			}
			wait := slices.Index(got, "bob0")
			t.Logf("order through the broker: %v", got)
			if tt.ahead != nil && wait > tt.maxWait || tt.ahead == nil && wait != tt.maxWait {
				t.Errorf("Bob's job came after %d others: %v; want at most %d", wait, got, tt.maxWait)
			}
		})
	}
}

var errRefused = errors.New("refused by the test's broker")

// failOnce is the real broker, except that the message at index at of its
// first batch fails: refused before it is published or, with published,
// published and its confirmation lost. It records the size of each batch.
type failOnce struct {
	*jobnats.Queue
	at        int
	published bool
	batches   []int
}

func (f *failOnce) SendIDs(ctx context.Context, ms []jobs.IDMessage) []error {
	f.batches = append(f.batches, len(ms))
	if len(f.batches) > 1 || f.at >= len(ms) {
		return f.Queue.SendIDs(ctx, ms)
	}
	send := ms
	if !f.published {
		send = slices.Delete(slices.Clone(ms), f.at, f.at+1)
	}
	errs := f.Queue.SendIDs(ctx, send)
	if !f.published {
		errs = slices.Insert(errs, f.at, error(nil))
	}
	errs[f.at] = errRefused
	return errs
}

// TestRelayBatchOutcomes: the relay publishes a batch at once through a
// jobs.BatchIDSender and marks sent exactly the rows the broker
// confirmed. The row whose publish failed stays in the outbox and is
// resent after its visibility; if the broker had stored it after all, the
// resend is dropped by its message id. Every job reaches the stream once.
func TestRelayBatchOutcomes(t *testing.T) {
	t.Parallel()
	for _, published := range []bool{false, true} {
		t.Run(fmt.Sprint("published=", published), func(t *testing.T) {
			t.Parallel()
			q := newQueue(t, jobnats.Options{Storage: jetstream.MemoryStorage})
			outbox := filledOutbox(t)
			broker := &failOnce{Queue: q, at: 3, published: published}
			relay := jobs.NewRelay(outbox, broker, jobs.RelayOptions{Visibility: childVisibility})

			sent, err := relay.Once(t.Context())
			if sent != relayJobs-1 || !errors.Is(err, errRefused) {
				t.Errorf("Once = %d, %v; want %d sent and the refusal", sent, err, relayJobs-1)
			}
			if !slices.Equal(broker.batches, []int{relayJobs}) {
				t.Errorf("batches sent %v, want one of %d", broker.batches, relayJobs)
			}
			if st, err := outbox.Stats(t.Context()); err != nil || st.Kinds[relayKind] != (jobs.KindStats{InFlight: 1, OldestAge: st.Kinds[relayKind].OldestAge}) {
				t.Errorf("outbox after the first pass: %+v, %v; want the failed row only, in flight", st.Kinds[relayKind], err)
			}
			drain(t, relay, outbox)
			if len(broker.batches) < 2 || broker.batches[len(broker.batches)-1] != 1 {
				t.Errorf("batches sent %v, want the failed row resent alone", broker.batches)
			}
			msgs, err := q.Receive(t.Context(), relayKind, 100, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			var got, want []string
			for _, m := range msgs {
				got = append(got, string(m.Payload))
			}
			for i := range relayJobs {
				want = append(want, fmt.Sprint(i))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("jobs in the stream %v, want each of the %d once", got, relayJobs)
			}
		})
	}
}

// countingStats is an outbox that counts its Stats calls.
type countingStats struct {
	*jobsqlite.Queue
	n int
}

func (c *countingStats) Stats(ctx context.Context) (jobs.Stats, error) {
	c.n++
	return c.Queue.Stats(ctx)
}

// TestRelayFindsKinds: the relay counts the outbox (Stats) to find kinds
// with rows, not on every pass through a backlog: it keeps taking from
// the kinds that had rows, and looks for new kinds once an Interval, or
// at once when they have drained.
func TestRelayFindsKinds(t *testing.T) {
	t.Parallel()
	q := newQueue(t, jobnats.Options{Storage: jetstream.MemoryStorage})
	outbox := &countingStats{Queue: filledOutbox(t)}
	const interval = time.Second
	relay := jobs.NewRelay(outbox, q, jobs.RelayOptions{Batch: 4, Interval: interval})
	once := func() int {
		t.Helper()
		n, err := relay.Once(t.Context())
		if err != nil {
			t.Fatalf("relay: %v", err)
		}
		return n
	}
	start := time.Now()
	for _, want := range []int{4, 4} {
		if n := once(); n != want {
			t.Fatalf("pass relayed %d, want %d", n, want)
		}
	}
	if err := outbox.Send(t.Context(), jobs.Message{Kind: "new.kind"}, jobs.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	n := once()
	if time.Since(start) >= interval {
		t.Skip("the machine is too slow for this test's interval")
	}
	if n != 2 || outbox.n != 1 {
		t.Fatalf("third pass relayed %d after %d Stats; want the last 2 of the backlog and the one Stats of the first pass", n, outbox.n)
	}
	time.Sleep(interval)
	if n := once(); n != 1 || outbox.n != 2 {
		t.Fatalf("a pass an Interval later relayed %d after %d Stats; want the new kind's job, found by a second Stats", n, outbox.n)
	}
	// Every kind drained: the next pass looks for kinds at once, so a job
	// of any kind goes without waiting for the Interval.
	if n := once(); n != 0 {
		t.Fatalf("a pass over a drained outbox relayed %d", n)
	}
	if err := outbox.Send(t.Context(), jobs.Message{Kind: "other.kind"}, jobs.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := once(); n != 1 {
		t.Errorf("the pass after the outbox drained relayed %d, want the other kind's job", n)
	}
}
