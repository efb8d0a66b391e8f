package notifytest

import (
	"testing"
	"time"

	"onebox/notify"
)

// RunShared runs the tests of hubs across instances against two hubs
// made by newHubs, as two instances would open them on one backend (and
// on nothing that other tests share: their topics are common). If the
// hubs are notify.Buses, the bus is tested too.
func RunShared(t *testing.T, newHubs func(t *testing.T) (notify.Hub, notify.Hub)) {
	t.Helper()
	tests := []struct {
		name string
		test func(t *testing.T, a, b notify.Hub)
	}{
		{"WakeAcross", testWakeAcross},
		{"Bus", testBus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := newHubs(t)
			tt.test(t, a, b)
		})
	}
}

// testWakeAcross: a publish on one instance wakes the subscribers of
// both, and only of its topic.
func testWakeAcross(t *testing.T, a, b notify.Hub) {
	onA, onB := subscribe(t, a, "user:1"), subscribe(t, b, "user:1")
	other := subscribe(t, b, "user:2")
	mustPublish(t, a, "user:1")
	requireWake(t, onA)
	requireWake(t, onB)
	requireQuiet(t, other)
	mustPublish(t, b, "user:2")
	requireWake(t, other)
}

// testBus: a message sent on one instance reaches the listeners of its
// subject on both, whole.
func testBus(t *testing.T, a, b notify.Hub) {
	busA, okA := a.(notify.Bus)
	busB, okB := b.(notify.Bus)
	if !okA || !okB {
		t.Skip("not a notify.Bus")
	}
	listen := func(bus notify.Bus, subject string) <-chan string {
		ch := make(chan string, 16)
		stop := bus.Listen(subject, func(msg []byte) {
			select {
			case ch <- string(msg):
			default:
				t.Errorf("listener of %q: too many messages", subject)
			}
		})
		t.Cleanup(stop)
		return ch
	}
	onA, onB, other := listen(busA, "cache"), listen(busB, "cache"), listen(busB, "else")
	const msg = "u:42 with spaces: and\ttabs"
	if err := busA.Send(t.Context(), "cache", []byte(msg)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	for name, ch := range map[string]<-chan string{"sender": onA, "other instance": onB} {
		select {
		case got := <-ch:
			if got != msg {
				t.Errorf("%s got %q, want %q", name, got, msg)
			}
		case <-time.After(deadline):
			t.Fatalf("%s got no message in %v", name, deadline)
		}
	}
	select {
	case got := <-other:
		t.Fatalf("listener of another subject got %q", got)
	case <-time.After(quiet):
	}
	stop := busB.Listen("late", func([]byte) { t.Error("a stopped listener was called") })
	stop()
	if err := busA.Send(t.Context(), "late", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := busA.Send(t.Context(), "bad\nsubject", nil); err == nil {
		t.Error("Send accepted a subject with a newline")
	}
	time.Sleep(quiet)
}
