package cache

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hookedCache is a map whose Get, Set and Delete call hooks, so a test can
// stop each at a chosen point.
type hookedCache struct {
	mu    sync.Mutex
	m     map[string][]byte
	gets  atomic.Int32
	onGet func(n int32) // before the n-th Get reads
	read  func(n int32) // after it has read
	onSet func()        // before a Set writes
	onDel func()        // before Delete deletes
}

func (h *hookedCache) Get(_ context.Context, key string) ([]byte, error) {
	n := h.gets.Add(1)
	h.onGet(n)
	h.mu.Lock()
	v, ok := h.m[key]
	h.mu.Unlock()
	h.read(n)
	if !ok {
		return nil, ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

func (h *hookedCache) Set(_ context.Context, key string, v []byte, _ time.Duration) error {
	h.onSet()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.m[key] = append([]byte(nil), v...)
	return nil
}

func (h *hookedCache) Delete(_ context.Context, key string) error {
	h.onDel()
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, key)
	return nil
}

// A Get that starts after Invalidate has returned never gets a value read
// before Invalidate was called, even through a load that started during
// Invalidate and found the old value a stale load had just written.
func TestInvalidateDetachesLoadsStartedDuringIt(t *testing.T) {
	t.Parallel()
	var source atomic.Value
	source.Store("old")
	load := func(context.Context) ([]byte, error) { return []byte(source.Load().(string)), nil }

	setEntered, releaseSet := make(chan struct{}), make(chan struct{})
	recheckEntered, recheckGo, recheckRead, flight2Go := make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	var sets atomic.Int32
	h := &hookedCache{m: map[string][]byte{}}
	// Gets 1 and 2 are the first flight's; 3 is the second Get's lookup
	// and 4 its flight's re-check of the cache, which is held before it
	// reads and again after.
	h.onGet = func(n int32) {
		if n == 4 {
			close(recheckEntered)
			<-recheckGo
		}
	}
	h.read = func(n int32) {
		if n == 4 {
			close(recheckRead)
			<-flight2Go
		}
	}
	h.onSet = func() {
		if sets.Add(1) == 1 { // the first flight writes "old"
			close(setEntered)
			<-releaseSet
		}
	}
	h.onDel = func() { <-recheckRead }
	a := NewAside(h, AsideOptions{TTL: time.Hour})
	ctx := t.Context()
	flightOf := func() *flight {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.flights["k"]
	}

	go func() { _, _ = a.Get(ctx, "k", load) }() // flight 1 reads "old" and stops in Set
	<-setEntered
	f1 := flightOf()
	source.Store("new")
	invalidated := make(chan struct{})
	go func() { _ = a.Invalidate(ctx, "k"); close(invalidated) }()
	// Invalidate has detached flight 1 and waits for its write.
	waitUntil(t, "Invalidate detaches flight 1", func() bool { return flightOf() != f1 })
	go func() { _, _ = a.Get(ctx, "k", load) }() // flight 2, stopped at its re-check
	<-recheckEntered
	close(releaseSet) // flight 1 writes "old"
	waitUntil(t, "flight 1 writes", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		_, written := h.m["k"]
		return written
	})
	close(recheckGo) // flight 2 reads it, and holds; then Invalidate deletes it
	<-invalidated

	got := make(chan string, 1)
	go func() { v, _ := a.Get(ctx, "k", load); got <- string(v) }()
	var v string
	select {
	case v = <-got:
	case <-time.After(2 * time.Second): // it waits on flight 2: let that go
		close(flight2Go)
		v = <-got
	}
	if v != "new" {
		t.Fatalf("Get after Invalidate = %q, want new", v)
	}
	select {
	case <-flight2Go:
	default:
		close(flight2Go)
	}
}

// waitUntil polls cond, and fails the test if it does not hold within
// ten seconds, instead of hanging until go test's own timeout.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
	}
}
