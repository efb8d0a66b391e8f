package notifytest

import (
	"testing"
	"time"

	"onebox/notify"
)

// Reconnect checks a hub across the network through the loss of its
// connection: after drop cuts it, the subscription on "user:1" ends
// (wake-ups may have been lost meanwhile); after restore (nil when the
// hub reconnects by itself) and reconnecting, a new subscription is woken.
func Reconnect(t *testing.T, h interface {
	notify.Hub
	Connected() bool
}, drop, restore func(t *testing.T)) {
	t.Helper()
	const wait = 10 * time.Second
	ch, unsubscribe := mustSubscribe(t, t.Context(), h, "user:1")
	defer unsubscribe()

	drop(t)
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("woken, want the subscription ended")
		}
	case <-time.After(wait):
		t.Fatalf("subscription not ended %v after the connection was", wait)
	}
	if restore != nil {
		restore(t)
	}
	WaitConnected(t, h)
	ch, unsubscribe = mustSubscribe(t, t.Context(), h, "user:1")
	defer unsubscribe()
	mustPublish(t, h, "user:1")
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatal("no wake-up after reconnecting")
	}
}
