package cachetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"onebox/cache"
)

func testRoundTrip(t *testing.T, c cache.Cache) {
	mustSet(t, c, "k", []byte("v"), long)
	requireValue(t, c, "k", []byte("v"))
}

func testMiss(t *testing.T, c cache.Cache) {
	requireMiss(t, c, "never-set")
}

func testOverwrite(t *testing.T, c cache.Cache) {
	mustSet(t, c, "k", []byte("first"), long)
	mustSet(t, c, "k", []byte("second"), long)
	requireValue(t, c, "k", []byte("second"))
}

func testDelete(t *testing.T, c cache.Cache) {
	mustSet(t, c, "k", []byte("v"), long)
	mustSet(t, c, "other", []byte("v"), long)
	mustDelete(t, c, "k")
	requireMiss(t, c, "k")
	requireValue(t, c, "other", []byte("v"))
}

func testDeleteMissing(t *testing.T, c cache.Cache) {
	mustDelete(t, c, "never-set")
}

// testConcurrent mixes Set, Get and Delete on a few keys; under -race it
// finds unsynchronised state, and the value check finds torn writes.
func testConcurrent(t *testing.T, c cache.Cache) {
	const (
		workers = 16
		ops     = 500
		keys    = 8
	)
	ctx := t.Context()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range ops {
				key := fmt.Sprintf("k%d", (w+i)%keys)
				var err error
				switch i % 3 {
				case 0:
					err = c.Set(ctx, key, fmt.Appendf(nil, "%s=%d", key, w), long)
				case 1:
					var v []byte
					v, err = c.Get(ctx, key)
					if errors.Is(err, cache.ErrNotFound) {
						err = nil
					} else if err == nil && !strings.HasPrefix(string(v), key+"=") {
						t.Errorf("Get(%q) = %q, a value of another key", key, v)
					}
				case 2:
					err = c.Delete(ctx, key)
				}
				if err != nil {
					t.Errorf("op %d on %q: %v", i%3, key, err)
				}
			}
		})
	}
	wg.Wait()
}
