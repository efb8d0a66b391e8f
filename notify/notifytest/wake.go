package notifytest

import (
	"sync/atomic"
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
// or more, and again by a later publish. A Publish that waited for the
// reader would stop making progress once a buffer filled, so the test
// fails when no publish completes for a deadline, not when all of them
// take longer than one: on a loaded machine 1000 round trips to a
// server can.
func testCoalesce(t *testing.T, h notify.Hub) {
	ch := subscribe(t, h, "user:1")
	const publishes = 1000
	var done atomic.Int64
	errc := make(chan error, 1)
	go func() {
		for range publishes {
			if err := h.Publish(t.Context(), "user:1"); err != nil {
				errc <- err
				return
			}
			done.Add(1)
		}
		errc <- nil
	}()
	last := int64(-1)
	for waiting := true; waiting; {
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			waiting = false
		case <-time.After(deadline):
			n := done.Load()
			if n == last {
				// Free the stuck publisher, so the subscription's cleanup
				// does not wait for it and the failure is reported.
				go func() {
					for range ch {
					}
				}()
				t.Fatalf("%d of %d publishes to an unread subscriber, then none for %v: Publish blocks", n, publishes, deadline)
			}
			last = n
		}
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
