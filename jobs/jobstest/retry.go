package jobstest

import (
	"errors"
	"testing"
	"time"

	"onebox/jobs"
)

func testRetry(t *testing.T, newQueue func(t *testing.T) jobs.Queue) {
	t.Run("at a future time", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		m := mustSendReceive(t, q)
		const after = 500 * time.Millisecond
		start := time.Now()
		if err := q.Retry(t.Context(), m.Receipt(), start.Add(after), "boom"); err != nil {
			t.Fatalf("Retry: %v", err)
		}
		mustNotReceive(t, q, "k", time.Minute)
		// Waiting for its retry, it is queued, not in flight.
		if ks := mustStats(t, q).Kinds["k"]; ks.Queued != 1 || ks.InFlight != 0 {
			t.Errorf("waiting for its retry: %+v, want queued 1", ks)
		}
		// Visible at the retry time, well before the visibility timeout.
		again := mustReceiveOne(t, q, "k", time.Minute)
		if waited := time.Since(start); waited < after-5*time.Millisecond {
			t.Errorf("redelivered after %v, want at least %v", waited, after)
		}
		if again.ID != m.ID || again.Attempt != 2 {
			t.Errorf("redelivered %s attempt %d, want %s attempt 2", again.ID, again.Attempt, m.ID)
		}
		if ks := mustStats(t, q).Kinds["k"]; ks.Queued != 0 || ks.InFlight != 1 {
			t.Errorf("received again: %+v, want in flight 1", ks)
		}
		// The error is kept: dead-lettering without a reason keeps it.
		if err := q.DeadLetter(t.Context(), again.Receipt(), ""); err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
		dead := mustDead(t, q, 10)
		if len(dead) != 1 || dead[0].LastError != "boom" || dead[0].Attempt != 2 {
			t.Errorf("Dead = %+v, want one with last error boom, attempt 2", dead)
		}
	})

	t.Run("in the past", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		m := mustSendReceive(t, q)
		for attempt := 2; attempt <= 4; attempt++ {
			if err := q.Retry(t.Context(), m.Receipt(), time.Now().Add(-time.Hour), "boom"); err != nil {
				t.Fatalf("Retry: %v", err)
			}
			msgs := mustReceive(t, q, "k", 1, time.Minute)
			if len(msgs) != 1 || msgs[0].Attempt != attempt {
				t.Fatalf("Receive = %+v, want it again at once, attempt %d", msgs, attempt)
			}
			m = msgs[0]
		}
	})

	t.Run("the last error wins", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		m := mustSendReceive(t, q)
		for _, e := range []string{"first", "second"} {
			if err := q.Retry(t.Context(), m.Receipt(), time.Now().Add(-time.Second), e); err != nil {
				t.Fatalf("Retry: %v", err)
			}
			m = mustReceiveOne(t, q, "k", time.Minute)
		}
		if err := q.DeadLetter(t.Context(), m.Receipt(), ""); err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
		if dead := mustDead(t, q, 10); len(dead) != 1 || dead[0].LastError != "second" {
			t.Errorf("Dead = %+v, want last error second", dead)
		}
	})

	t.Run("a missing message", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		if err := q.Retry(t.Context(), jobs.Receipt{ID: "no-such-id"}, time.Now(), "boom"); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("Retry = %v, want ErrNotFound", err)
		}
	})
}
