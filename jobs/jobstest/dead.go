package jobstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"onebox/jobs"
)

func testDeadLetter(t *testing.T, newQueue func(t *testing.T) jobs.Queue) {
	t.Run("dead and redrive", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		sent := jobs.Message{Kind: "photo.process", Payload: json.RawMessage(`{"photo":"p1"}`), RequestID: "req-1", TraceParent: "00-aa-bb-01"}
		mustSend(t, q, sent, jobs.SendOptions{})
		const visibility = 200 * time.Millisecond
		m := mustReceiveOne(t, q, sent.Kind, visibility)
		before := time.Now()
		if err := q.DeadLetter(t.Context(), m.Receipt(), "corrupt photo"); err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
		if err := q.DeadLetter(t.Context(), m.Receipt(), "again"); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("DeadLetter twice = %v, want ErrNotFound", err)
		}
		// Gone from the queue for good, even after its visibility timeout.
		time.Sleep(300 * time.Millisecond)
		mustNotReceive(t, q, sent.Kind, visibility)

		dead := mustDead(t, q, 10)
		if len(dead) != 1 {
			t.Fatalf("Dead = %d messages, want 1", len(dead))
		}
		d := dead[0]
		if diff := sameMessage(d.Message, sent); diff != "" {
			t.Errorf("dead message: %s", diff)
		}
		if d.ID != m.ID || d.Attempt != 1 || d.LastError != "corrupt photo" {
			t.Errorf("dead %s attempt %d error %q, want %s attempt 1 error %q", d.ID, d.Attempt, d.LastError, m.ID, "corrupt photo")
		}
		if d.DiedAt.Before(before.Add(-time.Second)) || d.DiedAt.After(time.Now().Add(time.Second)) {
			t.Errorf("DiedAt %v, want about %v", d.DiedAt, before)
		}
		if ks := mustStats(t, q).Kinds[sent.Kind]; ks != (jobs.KindStats{Dead: 1}) {
			t.Errorf("Stats = %+v, want dead 1 only", ks)
		}

		n, err := q.Redrive(t.Context(), jobs.DeadFilter{IDs: []string{m.ID, "no-such-id"}})
		if err != nil || n != 1 {
			t.Fatalf("Redrive = %d, %v; want 1", n, err)
		}
		if dead := mustDead(t, q, 10); len(dead) != 0 {
			t.Errorf("Dead after Redrive = %+v, want none", dead)
		}
		again := mustReceive(t, q, sent.Kind, 10, visibility)
		if len(again) != 1 {
			t.Fatalf("Receive after Redrive = %d messages, want 1", len(again))
		}
		if diff := sameMessage(again[0], sent); diff != "" {
			t.Errorf("redriven: %s", diff)
		}
		if again[0].Attempt != 1 {
			t.Errorf("redriven Attempt = %d, want 1: a fresh count", again[0].Attempt)
		}
	})

	t.Run("redrive all", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		for _, kind := range []string{"a", "a", "b"} {
			mustSend(t, q, jobs.Message{Kind: kind}, jobs.SendOptions{})
			m := mustReceiveOne(t, q, kind, time.Minute)
			if err := q.DeadLetter(t.Context(), m.Receipt(), "x"); err != nil {
				t.Fatalf("DeadLetter: %v", err)
			}
		}
		if n, err := q.Redrive(t.Context(), jobs.DeadFilter{IDs: []string{"no-such-id"}}); err != nil || n != 0 {
			t.Errorf("Redrive(unknown) = %d, %v; want 0", n, err)
		}
		if n, err := q.Redrive(t.Context(), jobs.DeadFilter{}); err != nil || n != 3 {
			t.Fatalf("Redrive() = %d, %v; want 3", n, err)
		}
		if n, err := q.Redrive(t.Context(), jobs.DeadFilter{}); err != nil || n != 0 {
			t.Errorf("Redrive() again = %d, %v; want 0", n, err)
		}
		if got := len(mustReceive(t, q, "a", 10, time.Minute)) + len(mustReceive(t, q, "b", 10, time.Minute)); got != 3 {
			t.Errorf("received %d after Redrive, want 3", got)
		}
	})

	t.Run("newest first, up to limit", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		for i := range 4 {
			mustSend(t, q, jobs.Message{Kind: "k", Payload: json.RawMessage(fmt.Sprint(i))}, jobs.SendOptions{})
			m := mustReceiveOne(t, q, "k", time.Minute)
			if err := q.DeadLetter(t.Context(), m.Receipt(), fmt.Sprint("died ", i)); err != nil {
				t.Fatalf("DeadLetter: %v", err)
			}
		}
		var got []string
		for _, d := range mustDead(t, q, 3) {
			got = append(got, d.LastError)
		}
		if want := []string{"died 3", "died 2", "died 1"}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Dead(3) = %q, want %q", got, want)
		}
	})

	t.Run("filter by kind and error", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		died := map[string]string{} // id → "kind/error"
		for _, d := range []struct{ kind, err string }{
			{"a", "timeout talking to storage"},
			{"a", "corrupt image"},
			{"b", "timeout talking to storage"},
			{"a", "read: timeout"},
		} {
			mustSend(t, q, jobs.Message{Kind: d.kind}, jobs.SendOptions{})
			m := mustReceiveOne(t, q, d.kind, time.Minute)
			if err := q.DeadLetter(t.Context(), m.Receipt(), d.err); err != nil {
				t.Fatalf("DeadLetter: %v", err)
			}
			died[m.ID] = d.kind + "/" + d.err
		}
		list := func(f jobs.DeadFilter) []string {
			t.Helper()
			dead, err := q.Dead(t.Context(), f, 10)
			if err != nil {
				t.Fatalf("Dead(%+v): %v", f, err)
			}
			var got []string
			for _, d := range dead {
				if died[d.ID] != d.Kind+"/"+d.LastError {
					t.Errorf("Dead(%+v) lists %s as %s/%s, want %s", f, d.ID, d.Kind, d.LastError, died[d.ID])
				}
				got = append(got, d.Kind+"/"+d.LastError)
			}
			return got
		}
		var anyID string
		for id, v := range died {
			if v == "a/corrupt image" {
				anyID = id
			}
		}
		tests := []struct {
			f    jobs.DeadFilter
			want []string // newest first
		}{
			{jobs.DeadFilter{}, []string{"a/read: timeout", "b/timeout talking to storage", "a/corrupt image", "a/timeout talking to storage"}},
			{jobs.DeadFilter{Kind: "a"}, []string{"a/read: timeout", "a/corrupt image", "a/timeout talking to storage"}},
			{jobs.DeadFilter{Error: "timeout"}, []string{"a/read: timeout", "b/timeout talking to storage", "a/timeout talking to storage"}},
			{jobs.DeadFilter{Kind: "a", Error: "timeout talking"}, []string{"a/timeout talking to storage"}},
			{jobs.DeadFilter{Error: "Timeout"}, nil}, // case-sensitive
			{jobs.DeadFilter{Kind: "c"}, nil},
			{jobs.DeadFilter{IDs: []string{anyID, "no-such-id"}, Kind: "a"}, []string{"a/corrupt image"}},
			{jobs.DeadFilter{IDs: []string{anyID}, Kind: "b"}, nil},
		}
		for _, tt := range tests {
			if got := list(tt.f); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Dead(%+v) = %q, want %q", tt.f, got, tt.want)
			}
		}

		// Redrive takes the same filter: kind a's timeouts go back.
		if n, err := q.Redrive(t.Context(), jobs.DeadFilter{Kind: "a", Error: "timeout"}); err != nil || n != 2 {
			t.Fatalf("Redrive(a, timeout) = %d, %v; want 2", n, err)
		}
		if got, want := list(jobs.DeadFilter{}), []string{"b/timeout talking to storage", "a/corrupt image"}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Dead after Redrive = %q, want %q", got, want)
		}
		if got := len(mustReceive(t, q, "a", 10, time.Minute)); got != 2 {
			t.Errorf("received %d of kind a after Redrive, want 2", got)
		}
		if n, err := q.Redrive(t.Context(), jobs.DeadFilter{Kind: "b", Error: "corrupt"}); err != nil || n != 0 {
			t.Errorf("Redrive(b, corrupt) = %d, %v; want 0", n, err)
		}
	})

	t.Run("prune", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		kill := func(err string) {
			t.Helper()
			m := mustSendReceive(t, q)
			if err := q.DeadLetter(t.Context(), m.Receipt(), err); err != nil {
				t.Fatalf("DeadLetter: %v", err)
			}
		}
		kill("old 1")
		kill("old 2")
		time.Sleep(50 * time.Millisecond) // times are kept to the millisecond
		mid := time.Now()
		time.Sleep(50 * time.Millisecond)
		kill("new")
		errs := func() []string {
			var out []string
			for _, d := range mustDead(t, q, 10) {
				out = append(out, d.LastError)
			}
			return out
		}
		// Oldest first, up to the limit, none younger than before.
		for _, want := range []struct {
			n    int
			left []string
		}{{1, []string{"new", "old 2"}}, {1, []string{"new"}}, {0, []string{"new"}}} {
			n, err := q.PruneDead(t.Context(), mid, 1)
			if err != nil || n != want.n {
				t.Fatalf("PruneDead = %d, %v; want %d", n, err, want.n)
			}
			if got := errs(); fmt.Sprint(got) != fmt.Sprint(want.left) {
				t.Errorf("after PruneDead: %q, want %q", got, want.left)
			}
		}
		if ks := mustStats(t, q).Kinds["k"]; ks.Dead != 1 {
			t.Errorf("Stats after pruning: %+v, want dead 1", ks)
		}
	})

	t.Run("prune beyond a count", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		// Two kinds: the bound is the queue's, not each kind's.
		for i, kind := range []string{"a", "b", "a", "b", "a"} {
			mustSend(t, q, jobs.Message{Kind: kind}, jobs.SendOptions{})
			m := mustReceiveOne(t, q, kind, time.Minute)
			if err := q.DeadLetter(t.Context(), m.Receipt(), fmt.Sprint("died ", i)); err != nil {
				t.Fatalf("DeadLetter: %v", err)
			}
		}
		// Oldest first, up to the limit, never one of the newest keep.
		for _, step := range []struct {
			keep, limit, n int
			left           []string
		}{
			{3, 10, 2, []string{"died 4", "died 3", "died 2"}},
			{1, 1, 1, []string{"died 4", "died 3"}},
			{1, 1, 1, []string{"died 4"}},
			{1, 10, 0, []string{"died 4"}},
			{5, 10, 0, []string{"died 4"}},
			{0, 10, 1, nil},
		} {
			n, err := q.PruneDeadBeyond(t.Context(), step.keep, step.limit)
			if err != nil || n != step.n {
				t.Fatalf("PruneDeadBeyond(%d, %d) = %d, %v; want %d", step.keep, step.limit, n, err, step.n)
			}
			var left []string
			for _, d := range mustDead(t, q, 10) {
				left = append(left, d.LastError)
			}
			if fmt.Sprint(left) != fmt.Sprint(step.left) {
				t.Errorf("after PruneDeadBeyond(%d, %d): %q, want %q", step.keep, step.limit, left, step.left)
			}
		}
		if st := mustStats(t, q); st.Kinds["a"].Dead+st.Kinds["b"].Dead != 0 {
			t.Errorf("Stats after pruning all: %+v, want no dead", st.Kinds)
		}
	})

	t.Run("a missing message", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		if err := q.DeadLetter(t.Context(), jobs.Receipt{ID: "no-such-id"}, "x"); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("DeadLetter = %v, want ErrNotFound", err)
		}
	})

	t.Run("malformed body", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		raw, ok := q.(RawSender)
		if !ok {
			t.Skip("the queue does not implement jobstest.RawSender")
		}
		for _, body := range []string{`not json`, `{"v":1,"kind":""}`, `{"v":2,"kind":"k"}`} {
			if err := raw.SendRaw(t.Context(), "k", []byte(body)); err != nil {
				t.Fatalf("SendRaw: %v", err)
			}
		}
		mustSend(t, q, jobs.Message{Kind: "k", RequestID: "good"}, jobs.SendOptions{})
		msgs := mustReceive(t, q, "k", 10, time.Minute)
		if len(msgs) != 1 || msgs[0].RequestID != "good" {
			t.Errorf("Receive = %+v, want only the good message", msgs)
		}
		dead := mustDead(t, q, 10)
		if len(dead) != 3 {
			t.Fatalf("Dead = %d messages, want the 3 malformed", len(dead))
		}
		for _, d := range dead {
			if d.Kind != "k" || !strings.Contains(d.LastError, "malformed") || d.Attempt != 1 {
				t.Errorf("dead %+v, want kind k, a malformed error, attempt 1", d)
			}
			if d.Payload != nil && !json.Valid(d.Payload) {
				t.Errorf("dead payload %q is not JSON", d.Payload)
			}
		}
	})
}
