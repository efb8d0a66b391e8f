package jobstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"onebox/jobs"
)

func testSend(t *testing.T, newQueue func(t *testing.T) jobs.Queue) {
	t.Run("round trip", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name string
			m    jobs.Message
		}{
			{"everything", jobs.Message{Kind: "photo.process", Payload: json.RawMessage(`{"photo":"p1","n":[1,2]}`), RequestID: "req-1", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", FairKey: "user-0193f0e4"}},
			{"kind only", jobs.Message{Kind: "tick"}},
			{"odd kind", jobs.Message{Kind: "a:b/ü c", Payload: json.RawMessage(`"x"`)}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				q := newQueue(t)
				mustSend(t, q, tt.m, jobs.SendOptions{})
				msgs := mustReceive(t, q, tt.m.Kind, 10, time.Minute)
				if len(msgs) != 1 {
					t.Fatalf("Receive = %d messages, want 1", len(msgs))
				}
				got := msgs[0]
				if diff := sameMessage(got, tt.m); diff != "" {
					t.Errorf("received %s", diff)
				}
				if got.ID == "" || got.Attempt != 1 {
					t.Errorf("ID %q, Attempt %d; want an id and attempt 1", got.ID, got.Attempt)
				}
			})
		}
	})

	t.Run("empty kind is malformed", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		if err := q.Send(t.Context(), jobs.Message{Payload: json.RawMessage(`{}`)}, jobs.SendOptions{}); !errors.Is(err, jobs.ErrMalformed) {
			t.Fatalf("Send = %v, want ErrMalformed", err)
		}
	})

	t.Run("receive takes one kind", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		mustSend(t, q, jobs.Message{Kind: "a"}, jobs.SendOptions{})
		mustSend(t, q, jobs.Message{Kind: "b"}, jobs.SendOptions{})
		mustSend(t, q, jobs.Message{Kind: "ab"}, jobs.SendOptions{})
		for _, kind := range []string{"a", "b", "ab"} {
			msgs := mustReceive(t, q, kind, 10, time.Minute)
			if len(msgs) != 1 || msgs[0].Kind != kind {
				t.Errorf("Receive(%q) = %+v, want one message of that kind", kind, msgs)
			}
		}
		mustNotReceive(t, q, "c", time.Minute)
	})

	t.Run("max", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		for i := range 5 {
			mustSend(t, q, jobs.Message{Kind: "k", Payload: json.RawMessage(fmt.Sprint(i))}, jobs.SendOptions{})
		}
		if msgs := mustReceive(t, q, "k", 0, time.Minute); len(msgs) != 0 {
			t.Errorf("Receive(max 0) = %d messages, want 0", len(msgs))
		}
		if msgs := mustReceive(t, q, "k", 3, time.Minute); len(msgs) != 3 {
			t.Errorf("Receive(max 3) = %d messages, want 3", len(msgs))
		}
		if msgs := mustReceive(t, q, "k", 3, time.Minute); len(msgs) != 2 {
			t.Errorf("then Receive(max 3) = %d messages, want the other 2", len(msgs))
		}
	})

	t.Run("delay", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		const delay = 500 * time.Millisecond
		start := time.Now()
		mustSend(t, q, jobs.Message{Kind: "later"}, jobs.SendOptions{Delay: delay})
		mustSend(t, q, jobs.Message{Kind: "now"}, jobs.SendOptions{Delay: -time.Second})
		if msgs := mustReceive(t, q, "now", 10, time.Minute); len(msgs) != 1 {
			t.Errorf("a negative delay: Receive = %d messages, want 1", len(msgs))
		}
		mustNotReceive(t, q, "later", time.Minute)
		m := mustReceiveOne(t, q, "later", time.Minute)
		// Backends may store times to the millisecond.
		if waited := time.Since(start); waited < delay-5*time.Millisecond {
			t.Errorf("received after %v, want at least %v", waited, delay)
		}
		if m.Attempt != 1 {
			t.Errorf("Attempt = %d, want 1", m.Attempt)
		}
	})

	t.Run("oldest first", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		var want []string
		for i := range 5 {
			want = append(want, fmt.Sprint(i))
			mustSend(t, q, jobs.Message{Kind: "k", Payload: json.RawMessage(want[i])}, jobs.SendOptions{})
		}
		var got []string
		for _, m := range mustReceive(t, q, "k", 10, time.Minute) {
			got = append(got, string(m.Payload))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("order %v, want %v", got, want)
		}
	})

	t.Run("priority unsupported", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		if _, ok := q.(Prioritizer); ok {
			t.Skip("the queue honours priorities")
		}
		err := q.Send(t.Context(), jobs.Message{Kind: "k"}, jobs.SendOptions{Priority: 1})
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("Send with a priority = %v, want errors.ErrUnsupported", err)
		}
		mustNotReceive(t, q, "k", time.Minute)
	})

	t.Run("priority then age", func(t *testing.T) {
		t.Parallel()
		if _, ok := newQueue(t).(Prioritizer); !ok {
			t.Skip("the queue does not implement jobstest.Prioritizer")
		}
		sends := []struct {
			payload  string
			priority int
		}{{`"low1"`, 0}, {`"high"`, 5}, {`"low2"`, 0}, {`"mid"`, 1}, {`"low3"`, 0}, {`"neg"`, -1}}
		want := []string{`"high"`, `"mid"`, `"low1"`, `"low2"`, `"low3"`, `"neg"`}
		for _, batch := range []int{1, 10} {
			t.Run(fmt.Sprint("batch ", batch), func(t *testing.T) {
				t.Parallel()
				q := newQueue(t)
				for _, s := range sends {
					mustSend(t, q, jobs.Message{Kind: "k", Payload: json.RawMessage(s.payload)}, jobs.SendOptions{Priority: s.priority})
				}
				var got []string
				for len(got) < len(sends) {
					msgs := mustReceive(t, q, "k", batch, time.Minute)
					if len(msgs) == 0 {
						break
					}
					for _, m := range msgs {
						got = append(got, string(m.Payload))
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("order %v, want %v", got, want)
				}
			})
		}
	})
}
