package broadcast_test

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"onebox/cache"
	"onebox/cache/broadcast"
	cachememory "onebox/cache/memory"
	"onebox/internal/pgtest"
	"onebox/notify"
	notifynats "onebox/notify/nats"
	notifypostgres "onebox/notify/postgres"
)

// connectedBus is a hub across the network.
type connectedBus interface {
	notify.Bus
	Connected() bool
	Close() error
}

var names atomic.Int64

// backends opens, for each backend whose test server is set, two hubs
// on one channel of their own: two instances.
func backends(tb testing.TB) map[string]func(t testing.TB) (notify.Bus, notify.Bus) {
	tb.Helper()
	out := map[string]func(t testing.TB) (notify.Bus, notify.Bus){}
	if url := os.Getenv("ONEBOX_TEST_NATS_URL"); url != "" {
		out["nats"] = func(t testing.TB) (notify.Bus, notify.Bus) {
			subject := fmt.Sprintf("onebox.test.cache.%d.%d", time.Now().UnixNano(), names.Add(1))
			return pair(t, func() (connectedBus, error) {
				return notifynats.Open(url, notifynats.Options{Subject: subject})
			})
		}
	}
	if url := os.Getenv(pgtest.Env); url != "" {
		out["postgres"] = func(t testing.TB) (notify.Bus, notify.Bus) {
			channel := fmt.Sprintf("onebox_test_cache_%d_%d", time.Now().UnixNano(), names.Add(1))
			return pair(t, func() (connectedBus, error) {
				return notifypostgres.Open(url, notifypostgres.Options{Channel: channel})
			})
		}
	}
	if len(out) == 0 {
		tb.Skipf("neither ONEBOX_TEST_NATS_URL nor %s set: skipping the cache broadcast tests", pgtest.Env)
	}
	return out
}

func pair(t testing.TB, open func() (connectedBus, error)) (notify.Bus, notify.Bus) {
	t.Helper()
	var buses [2]notify.Bus
	for i := range buses {
		b, err := open()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		for end := time.Now().Add(10 * time.Second); !b.Connected(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatal("hub not connected after 10s")
			}
		}
		buses[i] = b
	}
	return buses[0], buses[1]
}

func newCache(t testing.TB, bus notify.Bus) *broadcast.Cache {
	t.Helper()
	c := broadcast.New(cachememory.New(cachememory.Options{MaxBytes: 1 << 20}), bus, broadcast.Options{
		OnError: func(key string, err error) { t.Errorf("invalidate %q: %v", key, err) },
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestInvalidateAcross: a Delete on one instance removes the entry on
// the other (within a deadline: the broadcast takes a round trip), and
// only that entry; Aside's watchers there hear of it.
func TestInvalidateAcross(t *testing.T) {
	t.Parallel()
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			busA, busB := open(t)
			a, b := newCache(t, busA), newCache(t, busB)
			var watched atomic.Value
			b.Watch(func(key string) { watched.Store(key) })
			ctx := t.Context()
			for _, c := range []cache.Cache{a, b} {
				for _, key := range []string{"u:1", "u:2"} {
					if err := c.Set(ctx, key, []byte("old"), time.Hour); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := a.Delete(ctx, "u:1"); err != nil {
				t.Fatal(err)
			}
			for end := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
				if _, err := b.Get(ctx, "u:1"); errors.Is(err, cache.ErrNotFound) {
					break
				}
				if time.Now().After(end) {
					t.Fatal("the other instance still holds u:1 10s after the invalidation")
				}
			}
			if v, err := b.Get(ctx, "u:2"); err != nil || string(v) != "old" {
				t.Fatalf("u:2 on the other instance: %q, %v; want it kept", v, err)
			}
			if got, _ := watched.Load().(string); got != "u:1" {
				t.Fatalf("watcher heard %q, want u:1", got)
			}
			// The sender ignores its own broadcast: it never asks its watchers.
			a.Watch(func(key string) { t.Errorf("sender's watcher heard its own %q", key) })
			if err := a.Delete(ctx, "u:2"); err != nil {
				t.Fatal(err)
			}
			for end := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
				if _, err := b.Get(ctx, "u:2"); errors.Is(err, cache.ErrNotFound) {
					break
				}
				if time.Now().After(end) {
					t.Fatal("the other instance still holds u:2 10s after the invalidation")
				}
			}
		})
	}
}

// BenchmarkBroadcast measures how long an invalidation takes to reach
// another instance: each op is a Delete on one and the moment the other
// has dropped its entry. The baseline, local, is a Delete that reaches
// nobody.
func BenchmarkBroadcast(b *testing.B) {
	b.Run("local", func(b *testing.B) {
		c := cachememory.New(cachememory.Options{MaxBytes: 1 << 20})
		defer c.Close()
		for b.Loop() {
			_ = c.Set(b.Context(), "u:1", []byte("old"), time.Hour)
			_ = c.Delete(b.Context(), "u:1")
		}
	})
	for name, open := range backends(b) {
		b.Run(name, func(b *testing.B) {
			busA, busB := open(b)
			a, other := newCache(b, busA), newCache(b, busB)
			dropped := make(chan struct{}, 2)
			other.Watch(func(string) {
				select {
				case dropped <- struct{}{}:
				default:
				}
			})
			ctx := b.Context()
			for b.Loop() {
				_ = other.Set(ctx, "u:1", []byte("old"), time.Hour)
				_ = a.Delete(ctx, "u:1")
				<-dropped // before the delete there
				<-dropped // after it
			}
		})
	}
}
