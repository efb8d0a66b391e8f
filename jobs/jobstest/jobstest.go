// Package jobstest is the conformance suite of jobs.Queue: every backend's
// tests call Run with a constructor of fresh, empty queues. It checks the
// Queue contract and, on top of each backend, the jobs.Runner. A change
// of behaviour lands here first.
//
// The suite uses short visibility timeouts and polls with generous
// deadlines; it asserts no timings beyond "not before". Visibility is per
// kind (see jobs.Queue): within a test every Receive and Extend of a kind
// passes the same one.
package jobstest

import (
	"context"
	"testing"
	"time"

	"onebox/jobs"
)

// RawSender is implemented by backends that can store a body that is not
// an envelope written by jobs.Encode, for kind. The suite uses it, when
// present, to check that malformed messages are dead-lettered. A backend
// may implement it in its own test files only (export_test.go).
type RawSender interface {
	SendRaw(ctx context.Context, kind string, body []byte) error
}

// Prioritizer is implemented by backends whose Receive honours
// jobs.SendOptions.Priority. The suite checks the order of priorities
// when it is present, and otherwise that a send with a priority fails
// with errors.ErrUnsupported instead of losing it silently. A backend may
// implement it in its own test files only (export_test.go).
type Prioritizer interface {
	HonoursPriority()
}

// InFlightUntilRedelivered is implemented by backends whose Stats count
// a message whose visibility lapsed as in flight until it is delivered
// again, not as queued: JetStream counts it among its consumer's pending
// acks until then, and says nothing of which of them lapsed. A backend
// may implement it in its own test files only (export_test.go).
type InFlightUntilRedelivered interface {
	InFlightUntilRedelivered()
}

// FairQueue is implemented by backends whose Receive serves the fair
// keys of a kind in turn (jobs.Message.FairKey): the first waiting job of
// each key, oldest first, then the second of each, and a key that had
// nothing waiting joins the current round rather than queue behind every
// backlog, as does each job without a key; a redriven dead job comes
// back first, once. The suite checks those orders when it is present; every
// backend must carry the key through Send and Receive. A backend may
// implement it in its own test files only (export_test.go).
type FairQueue interface {
	ServesKeysInTurn()
}

// Run runs the suite. newQueue returns an empty queue that lives until the
// test ends; each test and subtest gets its own.
func Run(t *testing.T, newQueue func(t *testing.T) jobs.Queue) {
	areas := []struct {
		name string
		fn   func(t *testing.T, newQueue func(t *testing.T) jobs.Queue)
	}{
		{"Send", testSend},
		{"Visibility", testVisibility},
		{"Ack", testAck},
		{"Retry", testRetry},
		{"DeadLetter", testDeadLetter},
		{"Lease", testLease},
		{"RunnerLease", testRunnerLease},
		{"Stats", testStats},
		{"Fair", testFair},
		{"Runner", testRunner},
		{"RateLimit", testRateLimit},
	}
	for _, a := range areas {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			a.fn(t, newQueue)
		})
	}
}

// wait is how long the suite waits for something that should happen
// within a second: long enough for a loaded machine running -race.
const wait = 15 * time.Second

func mustSend(t *testing.T, q jobs.Queue, m jobs.Message, o jobs.SendOptions) {
	t.Helper()
	if err := q.Send(t.Context(), m, o); err != nil {
		t.Fatalf("Send(%q): %v", m.Kind, err)
	}
}

func mustReceive(t *testing.T, q jobs.Queue, kind string, max int, visibility time.Duration) []jobs.Message {
	t.Helper()
	msgs, err := q.Receive(t.Context(), kind, max, visibility)
	if err != nil {
		t.Fatalf("Receive(%q): %v", kind, err)
	}
	return msgs
}

// mustSendReceive sends a message of kind "k" and receives it for a
// minute: the delivery most lease, retry and visibility cases start from.
func mustSendReceive(t *testing.T, q jobs.Queue) jobs.Message {
	t.Helper()
	mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
	return mustReceiveOne(t, q, "k", time.Minute)
}

// mustReceiveOne receives one message of kind, polling until it is
// visible.
func mustReceiveOne(t *testing.T, q jobs.Queue, kind string, visibility time.Duration) jobs.Message {
	t.Helper()
	var got jobs.Message
	eventually(t, "a message of kind "+kind, func() bool {
		msgs := mustReceive(t, q, kind, 1, visibility)
		if len(msgs) == 1 {
			got = msgs[0]
		}
		return len(msgs) == 1
	})
	return got
}

func mustNotReceive(t *testing.T, q jobs.Queue, kind string, visibility time.Duration) {
	t.Helper()
	if msgs := mustReceive(t, q, kind, 10, visibility); len(msgs) != 0 {
		t.Fatalf("Receive(%q) = %d messages, want none: %+v", kind, len(msgs), msgs)
	}
}

// eventually polls cond until it holds, failing the test after wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", wait, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustStats(t *testing.T, q jobs.Queue) jobs.Stats {
	t.Helper()
	st, err := q.Stats(t.Context())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return st
}

func mustDead(t *testing.T, q jobs.Queue, limit int) []jobs.DeadMessage {
	t.Helper()
	dead, err := q.Dead(t.Context(), jobs.DeadFilter{}, limit)
	if err != nil {
		t.Fatalf("Dead: %v", err)
	}
	return dead
}

// sameMessage reports how got differs from want in what the sender
// chose (kind, payload, request id, trace parent, fair key), or "".
func sameMessage(got, want jobs.Message) string {
	switch {
	case got.Kind != want.Kind:
		return "kind " + got.Kind + ", want " + want.Kind
	case string(got.Payload) != string(want.Payload):
		return "payload " + string(got.Payload) + ", want " + string(want.Payload)
	case got.RequestID != want.RequestID:
		return "request id " + got.RequestID + ", want " + want.RequestID
	case got.TraceParent != want.TraceParent:
		return "traceparent " + got.TraceParent + ", want " + want.TraceParent
	case got.FairKey != want.FairKey:
		return "fair key " + got.FairKey + ", want " + want.FairKey
	}
	return ""
}
