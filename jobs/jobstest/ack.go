package jobstest

import (
	"testing"
	"time"

	"onebox/jobs"
)

func testAck(t *testing.T, newQueue func(t *testing.T) jobs.Queue) {
	t.Run("batch", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		for range 3 {
			mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		}
		const visibility = 300 * time.Millisecond
		msgs := mustReceive(t, q, "k", 3, visibility)
		if len(msgs) != 3 {
			t.Fatalf("Receive = %d messages, want 3", len(msgs))
		}
		// Missing ids are fine: acked twice, or never there.
		if err := q.Ack(t.Context(), msgs[0].Receipt(), msgs[1].Receipt(), msgs[0].Receipt(), jobs.Receipt{ID: "no-such-id"}); err != nil {
			t.Fatalf("Ack: %v", err)
		}
		if err := q.Ack(t.Context()); err != nil {
			t.Fatalf("Ack(): %v", err)
		}
		// Only the unacked one comes back.
		again := mustReceiveOne(t, q, "k", visibility)
		if again.ID != msgs[2].ID {
			t.Errorf("redelivered %s, want %s", again.ID, msgs[2].ID)
		}
		if err := q.Ack(t.Context(), again.Receipt()); err != nil {
			t.Fatalf("Ack: %v", err)
		}
		if ks := mustStats(t, q).Kinds["k"]; ks.Queued+ks.InFlight != 0 {
			t.Errorf("after acking all: %+v", ks)
		}
	})

	t.Run("many", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		const n = 250
		for range n {
			mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		}
		msgs := mustReceive(t, q, "k", n, time.Minute)
		if len(msgs) != n {
			t.Fatalf("Receive = %d messages, want %d", len(msgs), n)
		}
		rs := make([]jobs.Receipt, len(msgs))
		seen := map[string]bool{}
		for i, m := range msgs {
			rs[i] = m.Receipt()
			seen[m.ID] = true
		}
		if len(seen) != n {
			t.Fatalf("%d distinct ids, want %d", len(seen), n)
		}
		if err := q.Ack(t.Context(), rs...); err != nil {
			t.Fatalf("Ack: %v", err)
		}
		if ks := mustStats(t, q).Kinds["k"]; ks.Queued+ks.InFlight != 0 {
			t.Errorf("after acking all: %+v", ks)
		}
	})
}
