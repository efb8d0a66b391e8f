package notifytest

import (
	"testing"
	"time"

	"onebox/notify"
)

func testWake(t *testing.T, h notify.Hub) {
	ch := subscribe(t, h, "user:1")
	mustPublish(t, h, "user:1")
	requireWake(t, ch)
}

func testWakeAfterEachPublish(t *testing.T, h notify.Hub) {
	ch := subscribe(t, h, "user:1")
	for range 3 {
		mustPublish(t, h, "user:1")
		requireWake(t, ch)
	}
}

func testNoSubscribers(t *testing.T, h notify.Hub) {
	mustPublish(t, h, "user:nobody")
}

// testCoalesce publishes many times to a subscriber that does not read:
// the publishes must not wait for it, and it must still be woken, once
// or more, and again by a later publish.
func testCoalesce(t *testing.T, h notify.Hub) {
	ch := subscribe(t, h, "user:1")
	const publishes = 1000
	done := make(chan error, 1)
	go func() {
		for range publishes {
			if err := h.Publish(t.Context(), "user:1"); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
	case <-time.After(deadline):
		t.Fatalf("%d publishes to an unread subscriber took over %v: Publish blocks", publishes, deadline)
	}
	requireWake(t, ch)
	// Drain what coalesced, then check that the subscription still works.
	for drained := false; !drained; {
		select {
		case <-ch:
		case <-time.After(quiet):
			drained = true
		}
	}
	mustPublish(t, h, "user:1")
	requireWake(t, ch)
}

func testTopicIsolation(t *testing.T, h notify.Hub) {
	one := subscribe(t, h, "user:1")
	two := subscribe(t, h, "user:2")
	prefix := subscribe(t, h, "user:")
	mustPublish(t, h, "user:1")
	requireWake(t, one)
	requireQuiet(t, two)
	requireQuiet(t, prefix)
	mustPublish(t, h, "user:2")
	requireWake(t, two)
	requireQuiet(t, one)
}

func testManySubscribers(t *testing.T, h notify.Hub) {
	chs := make([]<-chan struct{}, 100)
	for i := range chs {
		chs[i] = subscribe(t, h, "user:1")
	}
	mustPublish(t, h, "user:1")
	for _, ch := range chs {
		requireWake(t, ch)
	}
}
