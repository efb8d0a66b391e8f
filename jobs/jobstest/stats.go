package jobstest

import (
	"testing"
	"time"

	"onebox/jobs"
)

func testStats(t *testing.T, newQueue func(t *testing.T) jobs.Queue) {
	t.Run("empty", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		if st := mustStats(t, q); len(st.Kinds) != 0 {
			t.Errorf("Stats = %+v, want no kinds", st)
		}
	})

	t.Run("per kind", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		sends := []struct {
			kind  string
			delay time.Duration
		}{{"a", 0}, {"a", 0}, {"a", 0}, {"a", time.Hour}, {"b", 0}, {"c", 0}}
		for _, s := range sends {
			mustSend(t, q, jobs.Message{Kind: s.kind}, jobs.SendOptions{Delay: s.delay})
		}
		time.Sleep(20 * time.Millisecond) // some age
		mustReceive(t, q, "a", 2, time.Hour)
		c := mustReceiveOne(t, q, "c", time.Hour)
		if err := q.DeadLetter(t.Context(), c.Receipt(), "x"); err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}

		st := mustStats(t, q)
		want := map[string]jobs.KindStats{
			"a": {Queued: 2, InFlight: 2}, // one visible, one delayed
			"b": {Queued: 1},
			"c": {Dead: 1},
		}
		if len(st.Kinds) != len(want) {
			t.Errorf("Stats has kinds %v, want %v", st.Kinds, want)
		}
		for kind, w := range want {
			got := st.Kinds[kind]
			if got.Queued != w.Queued || got.InFlight != w.InFlight || got.Dead != w.Dead {
				t.Errorf("Stats[%s] = %+v, want %+v", kind, got, w)
			}
			if w.Queued+w.InFlight > 0 && (got.OldestAge < 10*time.Millisecond || got.OldestAge > time.Minute) {
				t.Errorf("Stats[%s].OldestAge = %v, want about 20ms", kind, got.OldestAge)
			}
			if w.Queued+w.InFlight == 0 && got.OldestAge != 0 {
				t.Errorf("Stats[%s].OldestAge = %v with nothing queued, want 0", kind, got.OldestAge)
			}
		}
	})

	t.Run("in flight until the timeout", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		const visibility = 200 * time.Millisecond
		mustReceive(t, q, "k", 1, visibility)
		if ks := mustStats(t, q).Kinds["k"]; ks.InFlight != 1 || ks.Queued != 0 {
			t.Errorf("received: %+v, want in flight 1", ks)
		}
		if _, ok := q.(InFlightUntilRedelivered); ok {
			// Received again, it is in flight again, and not twice.
			mustReceiveOne(t, q, "k", visibility)
			if ks := mustStats(t, q).Kinds["k"]; ks.InFlight != 1 || ks.Queued != 0 {
				t.Errorf("received again: %+v, want in flight 1", ks)
			}
			return
		}
		eventually(t, "the message to be queued again", func() bool {
			ks := mustStats(t, q).Kinds["k"]
			return ks.InFlight == 0 && ks.Queued == 1
		})
	})
}
