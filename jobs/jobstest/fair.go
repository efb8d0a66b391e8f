package jobstest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"onebox/jobs"
)

// testFair checks fair queueing (FairQueue) and, on every backend, that
// the key travels with the job.
func testFair(t *testing.T, newQueue func(t *testing.T) jobs.Queue) {
	t.Run("key survives retry", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		mustSend(t, q, jobs.Message{Kind: "k", FairKey: "owner-1"}, jobs.SendOptions{})
		m := mustReceiveOne(t, q, "k", time.Minute)
		if err := q.Retry(t.Context(), m.Receipt(), time.Now(), "once"); err != nil {
			t.Fatalf("Retry: %v", err)
		}
		again := mustReceiveOne(t, q, "k", time.Minute)
		if again.FairKey != "owner-1" || again.Attempt != 2 {
			t.Errorf("after a retry: key %q, attempt %d; want owner-1, 2", again.FairKey, again.Attempt)
		}
	})

	t.Run("a redriven job comes back at the front", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		if _, ok := q.(FairQueue); !ok {
			t.Skip("the queue does not implement jobstest.FairQueue")
		}
		ctx := t.Context()
		mustSend(t, q, fairJob("_dead"), jobs.SendOptions{})
		if err := q.DeadLetter(ctx, mustReceiveOne(t, q, "k", time.Minute).Receipt(), "it died"); err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
		for _, n := range []string{"a0", "a1", "a2"} {
			mustSend(t, q, fairJob(n), jobs.SendOptions{})
		}
		if err := q.Ack(ctx, mustReceiveOne(t, q, "k", time.Minute).Receipt()); err != nil { // a0: a's turns 1 and 2 wait
			t.Fatalf("Ack: %v", err)
		}
		if n, err := q.Redrive(ctx, jobs.DeadFilter{}); err != nil || n != 1 {
			t.Fatalf("Redrive = %d, %v; want 1", n, err)
		}
		var got []string
		for _, m := range mustReceive(t, q, "k", 3, time.Minute) {
			got = append(got, jobName(m))
		}
		if want := []string{"_dead", "a1", "a2"}; !slices.Equal(got, want) {
			t.Errorf("order after a redrive %v, want %v", got, want)
		}
	})

	// Each case sends jobs named "<key><n>" in order, receives some
	// without acking them (running jobs), sends more, then receives the
	// rest, batch at a time: want is the order of that last part.
	tests := []struct {
		name    string
		first   []string // sent first
		running int      // then received and left running
		then    []string // then sent
		want    []string // the order the rest is received in
	}{
		{
			name:  "keys take turns, oldest first in a round",
			first: []string{"a0", "a1", "a2", "a3", "a4", "a5", "b0", "c0", "c1"},
			want:  []string{"a0", "b0", "c0", "a1", "c1", "a2", "a3", "a4", "a5"},
		},
		{
			// A's first two run; B's one job goes right after A's next,
			// not after A's backlog.
			name:    "a newcomer waits for one job, not the backlog",
			first:   []string{"a0", "a1", "a2", "a3", "a4", "a5"},
			running: 2,
			then:    []string{"b0"},
			want:    []string{"a2", "b0", "a3", "a4", "a5"},
		},
		{
			// C's backlog arrives while A's is being served: it joins
			// the current round, and does not jump ahead of A's.
			name:    "a backlog keeps its place in each round",
			first:   []string{"a0", "a1", "a2", "a3"},
			running: 2,
			then:    []string{"c0", "c1", "c2", "c3"},
			want:    []string{"a2", "c0", "a3", "c1", "c2", "c3"},
		},
		{
			// A job without a key takes the current turn: keyless jobs
			// go in arrival order with the current round.
			name:    "a job without a key takes the current turn",
			first:   []string{"a0", "a1", "a2", "a3"},
			running: 1,
			then:    []string{"_0", "_1", "b0"},
			want:    []string{"a1", "_0", "_1", "b0", "a2", "a3"},
		},
	}
	for _, tt := range tests {
		for _, batch := range []int{1, 10} {
			t.Run(fmt.Sprintf("%s/batch %d", tt.name, batch), func(t *testing.T) {
				t.Parallel()
				q := newQueue(t)
				if _, ok := q.(FairQueue); !ok {
					t.Skip("the queue does not implement jobstest.FairQueue")
				}
				send := func(names []string) {
					for _, n := range names {
						mustSend(t, q, fairJob(n), jobs.SendOptions{})
					}
				}
				send(tt.first)
				if tt.running > 0 {
					if got := mustReceive(t, q, "k", tt.running, time.Minute); len(got) != tt.running {
						t.Fatalf("received %d to leave running, want %d", len(got), tt.running)
					}
				}
				send(tt.then)
				var got []string
				for len(got) < len(tt.want) {
					msgs := mustReceive(t, q, "k", batch, time.Minute)
					if len(msgs) == 0 {
						break
					}
					for _, m := range msgs {
						name := jobName(m)
						if want := fairJob(name).FairKey; m.FairKey != want {
							t.Errorf("%s received with key %q", name, m.FairKey)
						}
						got = append(got, name)
					}
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("order %v, want %v", got, tt.want)
				}
			})
		}
	}
}

// fairJob is the job of kind "k" named name, "<key><n>" or "_<…>" for
// a job without a key; its name is its payload.
func fairJob(name string) jobs.Message {
	key := strings.TrimRight(name, "0123456789")
	if strings.HasPrefix(name, "_") {
		key = ""
	}
	return jobs.Message{Kind: "k", FairKey: key, Payload: json.RawMessage(fmt.Sprintf("%q", name))}
}

// jobName is the name fairJob gave m.
func jobName(m jobs.Message) string {
	var name string
	_ = json.Unmarshal(m.Payload, &name)
	return name
}
