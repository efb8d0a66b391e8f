// Package notifytest is the conformance suite for notify.Hub: every
// backend's tests call Run, and a change to the contract lands here first.
package notifytest

import (
	"context"
	"testing"
	"time"

	"onebox/notify"
)

const (
	// deadline is how long a wake-up or a close may take: generous, so
	// that a loaded machine or a hub across the network does not fail.
	deadline = 5 * time.Second
	// quiet is how long a subscriber is watched to show that nothing
	// arrives.
	quiet = 50 * time.Millisecond
)

// Run runs the suite against hubs made by newHub, a fresh one per
// subtest (newHub may register its own clean-up with t.Cleanup). The
// subtests run in parallel.
func Run(t *testing.T, newHub func(t *testing.T) notify.Hub) {
	t.Helper()
	tests := []struct {
		name string
		test func(t *testing.T, h notify.Hub)
	}{
		{"Wake", testWake},
		{"WakeAfterEachPublish", testWakeAfterEachPublish},
		{"NoSubscribers", testNoSubscribers},
		{"Coalesce", testCoalesce},
		{"TopicIsolation", testTopicIsolation},
		{"ManySubscribers", testManySubscribers},
		{"Unsubscribe", testUnsubscribe},
		{"ContextEnds", testContextEnds},
		{"ContextEnded", testContextEnded},
		{"Concurrent", testConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, newHub(t))
		})
	}
}

// subscribe subscribes for the rest of the test.
func subscribe(t *testing.T, h notify.Hub, topic string) <-chan struct{} {
	t.Helper()
	ch, cancel := mustSubscribe(t, t.Context(), h, topic)
	t.Cleanup(cancel)
	return ch
}

func mustSubscribe(t *testing.T, ctx context.Context, h notify.Hub, topic string) (<-chan struct{}, func()) {
	t.Helper()
	ch, cancel, err := h.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	return ch, cancel
}

func mustPublish(t *testing.T, h notify.Hub, topic string) {
	t.Helper()
	if err := h.Publish(t.Context(), topic); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}

func requireWake(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatal("channel closed, want a wake-up")
		}
	case <-time.After(deadline):
		t.Fatalf("no wake-up in %v", deadline)
	}
}

func requireQuiet(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("woken without a publish to its topic")
		}
		t.Fatal("channel closed, want it open")
	case <-time.After(quiet):
	}
}

// requireClosed drains ch until it closes: a wake-up pending when the
// subscription ended may still be delivered first.
func requireClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("channel still open %v after the subscription ended", deadline)
		}
	}
}

// WaitConnected waits until a hub across the network is connected, and
// fails the test after a deadline: its server is set but unreachable.
func WaitConnected(t *testing.T, h interface{ Connected() bool }) {
	t.Helper()
	for end := time.Now().Add(2 * deadline); !h.Connected(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("hub not connected after %v", 2*deadline)
		}
	}
}
