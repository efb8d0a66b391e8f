package notifytest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"onebox/notify"
)

func testUnsubscribe(t *testing.T, h notify.Hub) {
	ended, cancel := mustSubscribe(t, t.Context(), h, "user:1")
	other := subscribe(t, h, "user:1")
	cancel()
	requireClosed(t, ended)
	cancel() // a second call is harmless
	mustPublish(t, h, "user:1")
	requireClosed(t, ended)
	requireWake(t, other)
}

func testContextEnds(t *testing.T, h notify.Hub) {
	ctx, cancel := context.WithCancel(t.Context())
	ch, unsubscribe := mustSubscribe(t, ctx, h, "user:1")
	other := subscribe(t, h, "user:1")
	cancel()
	requireClosed(t, ch)
	unsubscribe() // harmless after the context ended it
	mustPublish(t, h, "user:1")
	requireWake(t, other)
}

func testContextEnded(t *testing.T, h notify.Hub) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ch, unsubscribe, err := h.Subscribe(ctx, "user:1")
	if err != nil {
		return // refusing is as good as a closed channel
	}
	defer unsubscribe()
	requireClosed(t, ch)
}

// testConcurrent subscribes, publishes and ends subscriptions, by cancel
// and by context, on a few topics at once. Under -race it finds
// unsynchronised state; a send on a closed channel panics; and every
// subscription must see its channel closed.
func testConcurrent(t *testing.T, h notify.Hub) {
	const (
		workers = 16
		rounds  = 200
		topics  = 4
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				topic := fmt.Sprintf("user:%d", (w+i)%topics)
				ctx, cancel := context.WithCancel(t.Context())
				ch, unsubscribe, err := h.Subscribe(ctx, topic)
				if err != nil {
					t.Errorf("Subscribe(%q): %v", topic, err)
					cancel()
					return
				}
				if err := h.Publish(ctx, topic); err != nil {
					t.Errorf("Publish(%q): %v", topic, err)
				}
				if i%2 == 0 {
					cancel()
				} else {
					unsubscribe()
				}
				for range ch { // until closed
				}
				unsubscribe()
				cancel()
			}
		})
	}
	wg.Wait()
}
