package jobstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onebox/jobs"
)

// leaseVisibility is short, so a lease lapses quickly, and long enough
// that a loaded machine running -race makes the few calls a test makes
// within the second holder's lease.
const leaseVisibility = time.Second

// stolen sends a message of kind and receives it twice: first by a
// worker that then stalls past its visibility, second by the worker that
// takes it over.
func stolen(t *testing.T, q jobs.Queue, kind string) (first, second jobs.Message) {
	t.Helper()
	mustSend(t, q, jobs.Message{Kind: kind}, jobs.SendOptions{})
	first = mustReceiveOne(t, q, kind, leaseVisibility)
	second = mustReceiveOne(t, q, kind, leaseVisibility)
	if second.ID != first.ID || second.Attempt != first.Attempt+1 {
		t.Fatalf("received again %s attempt %d, want %s attempt %d", second.ID, second.Attempt, first.ID, first.Attempt+1)
	}
	if second.Lease == first.Lease {
		t.Fatalf("both deliveries have lease %q", first.Lease)
	}
	return first, second
}

func testLease(t *testing.T, newQueue func(t *testing.T) jobs.Queue) {
	// The first holder's every call is refused and changes nothing; then
	// the second holder settles the message, whichever way.
	settle := []struct {
		name  string
		do    func(q jobs.Queue, m jobs.Message) error
		after func(t *testing.T, q jobs.Queue, m jobs.Message)
	}{
		{"ack", func(q jobs.Queue, m jobs.Message) error { return q.Ack(context.Background(), m.Receipt()) }, func(t *testing.T, q jobs.Queue, _ jobs.Message) {
			if ks := mustStats(t, q).Kinds["k"]; ks.Queued+ks.InFlight+ks.Dead != 0 {
				t.Errorf("after the second holder's Ack: %+v, want nothing left", ks)
			}
		}},
		{"retry", func(q jobs.Queue, m jobs.Message) error {
			return q.Retry(context.Background(), m.Receipt(), time.Now(), "second failed")
		}, func(t *testing.T, q jobs.Queue, m jobs.Message) {
			if again := mustReceiveOne(t, q, "k", leaseVisibility); again.ID != m.ID || again.Attempt != m.Attempt+1 {
				t.Errorf("after the second holder's Retry: received %s attempt %d, want %s attempt %d", again.ID, again.Attempt, m.ID, m.Attempt+1)
			}
		}},
		{"dead-letter", func(q jobs.Queue, m jobs.Message) error {
			return q.DeadLetter(context.Background(), m.Receipt(), "second gave up")
		}, func(t *testing.T, q jobs.Queue, m jobs.Message) {
			if dead := mustDead(t, q, 10); len(dead) != 1 || dead[0].ID != m.ID || dead[0].LastError != "second gave up" || dead[0].Attempt != 2 {
				t.Errorf("after the second holder's DeadLetter: %+v, want %s, attempt 2, its reason", dead, m.ID)
			}
		}},
	}
	for _, s := range settle {
		t.Run("a stale holder cannot settle, then the new one "+s.name+"s", func(t *testing.T) {
			t.Parallel()
			q := newQueue(t)
			first, second := stolen(t, q, "k")
			ctx := t.Context()

			if err := q.Extend(ctx, first.Receipt(), leaseVisibility); !errors.Is(err, jobs.ErrLeaseLost) {
				t.Errorf("stale Extend = %v, want ErrLeaseLost", err)
			}
			if err := q.Retry(ctx, first.Receipt(), time.Now(), "first failed"); !errors.Is(err, jobs.ErrLeaseLost) {
				t.Errorf("stale Retry = %v, want ErrLeaseLost", err)
			}
			if err := q.DeadLetter(ctx, first.Receipt(), "first gave up"); !errors.Is(err, jobs.ErrLeaseLost) {
				t.Errorf("stale DeadLetter = %v, want ErrLeaseLost", err)
			}
			err := q.Ack(ctx, first.Receipt())
			var lost *jobs.LeaseLostError
			if !errors.As(err, &lost) || !errors.Is(err, jobs.ErrLeaseLost) || !slices.Equal(lost.IDs, []string{first.ID}) {
				t.Errorf("stale Ack = %v, want a LeaseLostError naming %s", err, first.ID)
			}
			// None of it touched the second holder's delivery: still in
			// flight, not retried, not dead.
			mustNotReceive(t, q, "k", leaseVisibility)
			if dead := mustDead(t, q, 10); len(dead) != 0 {
				t.Errorf("Dead = %+v after stale calls, want none", dead)
			}

			if err := q.Extend(ctx, second.Receipt(), leaseVisibility); err != nil {
				t.Errorf("the holder's Extend: %v", err)
			}
			if err := s.do(q, second); err != nil {
				t.Fatalf("the holder's %s: %v", s.name, err)
			}
			s.after(t, q, second)
		})
	}

	t.Run("a batch acks the current leases and names the lost", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		first, second := stolen(t, q, "k")
		mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		other := mustReceiveOne(t, q, "k", leaseVisibility)

		err := q.Ack(t.Context(), first.Receipt(), other.Receipt())
		var lost *jobs.LeaseLostError
		if !errors.As(err, &lost) || !slices.Equal(lost.IDs, []string{first.ID}) {
			t.Fatalf("Ack(stale, current) = %v, want a LeaseLostError naming only %s", err, first.ID)
		}
		if ks := mustStats(t, q).Kinds["k"]; ks.Queued+ks.InFlight != 1 {
			t.Errorf("after the batch: %+v, want only the stolen one left", ks)
		}
		if err := q.Ack(t.Context(), second.Receipt()); err != nil {
			t.Fatalf("the holder's Ack: %v", err)
		}
		if ks := mustStats(t, q).Kinds["k"]; ks.Queued+ks.InFlight != 0 {
			t.Errorf("after acking all: %+v", ks)
		}
	})

	t.Run("a lease from before a redrive stays lost", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		m := mustSendReceive(t, q)
		if err := q.DeadLetter(t.Context(), m.Receipt(), "died"); err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
		if n, err := q.Redrive(t.Context(), jobs.DeadFilter{}); err != nil || n != 1 {
			t.Fatalf("Redrive = %d, %v; want 1", n, err)
		}
		again := mustReceiveOne(t, q, "k", time.Minute)
		if again.ID == m.ID {
			t.Errorf("redriven under its old id %s: a lease from before could match again", m.ID)
		}
		// The old holder's late calls reach nothing.
		if err := q.Ack(t.Context(), m.Receipt()); err != nil {
			t.Errorf("old Ack = %v, want it ignored", err)
		}
		if err := q.Extend(t.Context(), m.Receipt(), time.Minute); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("old Extend = %v, want ErrNotFound", err)
		}
		if ks := mustStats(t, q).Kinds["k"]; ks.InFlight != 1 {
			t.Errorf("after the old holder's calls: %+v, want the redriven one in flight", ks)
		}
		if err := q.Ack(t.Context(), again.Receipt()); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	})

	t.Run("a lease that is not the queue's", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		m := mustSendReceive(t, q)
		for _, lease := range []string{"", "forged", m.Lease + "0"} {
			r := jobs.Receipt{ID: m.ID, Lease: lease}
			if err := q.Extend(t.Context(), r, time.Minute); !errors.Is(err, jobs.ErrLeaseLost) {
				t.Errorf("Extend with lease %q = %v, want ErrLeaseLost", lease, err)
			}
		}
		if err := q.Ack(t.Context(), m.Receipt()); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	})
}

// stalling is the queue under test with the heartbeat cut: Extend
// reaches nothing, as from a worker paused (a GC pause, a stopped VM, a
// partition) past its visibility timeout.
type stalling struct{ jobs.Queue }

func (stalling) Extend(context.Context, jobs.Receipt, time.Duration) error { return nil }

// testRunnerLease: a Runner whose worker stalls past its visibility has
// its late result refused, counted and discarded, whatever the result.
func testRunnerLease(t *testing.T, newQueue func(t *testing.T) jobs.Queue) {
	results := []struct {
		name   string
		err    error
		settle string // what the refused result would have done
	}{
		{"ok", nil, "ack"},
		{"failed", errors.New("late failure"), "retry"},
		{"permanent", fmt.Errorf("late: %w", jobs.ErrPermanent), "dead-letter"},
	}
	for _, res := range results {
		t.Run("a stale worker's "+res.name+" result is discarded", func(t *testing.T) {
			t.Parallel()
			q := newQueue(t)
			mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
			o := runnerOptions(t, nil)
			var lost sync.Map // kind → *atomic.Int32
			o.OnLeaseLost = func(kind string) {
				n, _ := lost.LoadOrStore(kind, new(atomic.Int32))
				n.(*atomic.Int32).Add(1)
			}
			lostCount := func() int {
				n, ok := lost.Load("k")
				if !ok {
					return 0
				}
				return int(n.(*atomic.Int32).Load())
			}
			r := jobs.NewRunner(stalling{q}, o)
			started, release := make(chan jobs.Message, 1), make(chan struct{})
			r.Register("k", func(ctx context.Context, m jobs.Message) error {
				started <- m
				<-release
				return res.err
			}, jobs.KindOptions{Visibility: leaseVisibility, MaxAttempts: 5})
			stop := start(t, r)
			m := receiveFrom(t, started)

			// Another worker takes the message once the stalled one's
			// visibility lapses; then the stalled one finishes.
			taken := mustReceiveOne(t, q, "k", leaseVisibility)
			if taken.ID != m.ID {
				t.Fatalf("took %s, want %s", taken.ID, m.ID)
			}
			close(release)
			eventually(t, "the late "+res.settle+" to be refused and counted", func() bool { return lostCount() == 1 })
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			// The new holder's delivery is untouched: not acked, not
			// rescheduled, not dead; it settles it.
			if ks := mustStats(t, q).Kinds["k"]; ks.InFlight != 1 || ks.Dead != 0 {
				t.Errorf("after the refused %s: %+v, want the taken message in flight", res.settle, ks)
			}
			if err := q.Ack(t.Context(), taken.Receipt()); err != nil {
				t.Errorf("the new holder's Ack: %v", err)
			}
			if got := lostCount(); got != 1 {
				t.Errorf("OnLeaseLost called %d times, want 1", got)
			}
		})
	}
}
