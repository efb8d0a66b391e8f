package jobstest

import (
	"errors"
	"testing"
	"time"

	"onebox/jobs"
)

func testVisibility(t *testing.T, newQueue func(t *testing.T) jobs.Queue) {
	t.Run("redelivered after the timeout", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		sent := jobs.Message{Kind: "k", RequestID: "req-1"}
		mustSend(t, q, sent, jobs.SendOptions{})
		const visibility = 500 * time.Millisecond
		// The timeout starts when the queue records the receive, at some
		// instant during the call: timed from before it, a correct queue
		// never redelivers sooner than visibility. Timed from its return,
		// as this test once did, a slow return made it look early.
		start := time.Now()
		first := mustReceive(t, q, "k", 1, visibility)
		if len(first) != 1 {
			t.Fatalf("Receive = %d messages, want 1", len(first))
		}
		// A worker that received it and died: no ack. Until the timeout
		// nobody else gets it.
		mustNotReceive(t, q, "k", visibility)
		again := mustReceiveOne(t, q, "k", visibility)
		if waited := time.Since(start); waited < visibility {
			t.Errorf("redelivered after %v, want at least %v", waited, visibility)
		}
		if again.ID != first[0].ID || again.Attempt != 2 {
			t.Errorf("redelivered %s attempt %d, want %s attempt 2", again.ID, again.Attempt, first[0].ID)
		}
		if diff := sameMessage(again, sent); diff != "" {
			t.Errorf("redelivered %s", diff)
		}
	})

	t.Run("extend", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		// Extend renews the kind's visibility from now. The margins are
		// wide for a loaded machine: the check comes a fifth of the
		// timeout after the first one ended, the second four fifths
		// before it does.
		const visibility = 2 * time.Second
		m := mustReceiveOne(t, q, "k", visibility)
		time.Sleep(visibility / 2)
		extended := time.Now()
		if err := q.Extend(t.Context(), m.Receipt(), visibility); err != nil {
			t.Fatalf("Extend: %v", err)
		}
		time.Sleep(visibility * 7 / 10)
		// The extended deadline is at least extended+visibility: a
		// message back before then was redelivered too soon. One back
		// later says nothing (a loaded machine slept too long).
		if msgs := mustReceive(t, q, "k", 10, visibility); len(msgs) != 0 {
			if since := time.Since(extended); since >= visibility {
				t.Skipf("the check came %v after Extend, past its %v: too slow a machine to tell", since, visibility)
			}
			t.Fatalf("Receive = %d messages within the extended visibility, want none: %+v", len(msgs), msgs)
		}
		// Zero makes it visible at once.
		if err := q.Extend(t.Context(), m.Receipt(), 0); err != nil {
			t.Fatalf("Extend: %v", err)
		}
		if again := mustReceiveOne(t, q, "k", visibility); again.ID != m.ID || again.Attempt != 2 {
			t.Errorf("received %s attempt %d, want %s attempt 2", again.ID, again.Attempt, m.ID)
		}
	})

	t.Run("extend a missing message", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		m := mustSendReceive(t, q)
		if err := q.Ack(t.Context(), m.Receipt()); err != nil {
			t.Fatalf("Ack: %v", err)
		}
		for _, r := range []jobs.Receipt{m.Receipt(), {ID: "no-such-id"}} {
			if err := q.Extend(t.Context(), r, time.Minute); !errors.Is(err, jobs.ErrNotFound) {
				t.Errorf("Extend(%s) = %v, want ErrNotFound", r.ID, err)
			}
		}
	})
}
