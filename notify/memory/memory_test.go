package memory_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"testing"

	"onebox/notify"
	"onebox/notify/memory"
	"onebox/notify/notifytest"
)

func newHub(t *testing.T) *memory.Hub {
	t.Helper()
	h := memory.New()
	t.Cleanup(h.Close)
	return h
}

func TestConformance(t *testing.T) {
	t.Parallel()
	notifytest.Run(t, func(t *testing.T) notify.Hub { return newHub(t) })
}

func TestClose(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	ctx := t.Context()
	chs := make([]<-chan struct{}, 0, 4)
	for _, topic := range []string{"a", "a", "b", "c"} {
		ch, cancel, err := h.Subscribe(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		defer cancel() // harmless after Close
		chs = append(chs, ch)
	}
	h.Close()
	h.Close()
	for i, ch := range chs {
		if _, ok := <-ch; ok {
			t.Fatalf("subscription %d got a value after Close, want its channel closed", i)
		}
	}
	if err := h.Publish(ctx, "a"); err != nil {
		t.Fatalf("Publish after Close: %v", err)
	}
	if _, _, err := h.Subscribe(ctx, "a"); !errors.Is(err, notify.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v, want notify.ErrClosed", err)
	}
}

// TestBounded subscribes to many topics and ends every subscription, on
// a context that lives on: nothing of them may remain, neither in the hub
// nor registered on the context.
func TestBounded(t *testing.T) {
	// Not parallel: the heap is measured, and the parallel tests wait
	// until this one is done.
	const topics = 100_000
	h := newHub(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range topics {
		_, unsubscribe, err := h.Subscribe(ctx, strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Publish(ctx, strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
		unsubscribe()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// A subscription takes a few hundred bytes; a hundred thousand kept
	// would take tens of megabytes.
	const budget = 2 << 20
	if growth := int64(after.HeapAlloc) - int64(before.HeapAlloc); growth > budget {
		t.Errorf("heap grew by %d bytes, want <= %d", growth, budget)
	}
	runtime.KeepAlive(h)
	runtime.KeepAlive(ctx)
}

// TestDrop: Drop ends every subscription and the hub works on.
func TestDrop(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	ctx := t.Context()
	ch, cancel, err := h.Subscribe(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	h.Drop()
	if _, ok := <-ch; ok {
		t.Fatal("subscription got a value after Drop, want its channel closed")
	}
	ch, cancel, err = h.Subscribe(ctx, "a")
	if err != nil {
		t.Fatalf("Subscribe after Drop: %v", err)
	}
	defer cancel()
	if err := h.Publish(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch; !ok {
		t.Fatal("subscription after Drop closed, want a wake-up")
	}
}
