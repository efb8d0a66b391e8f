package cachetest

import (
	"errors"
	"testing"
	"time"

	"onebox/cache"
)

func testExpiry(t *testing.T, c cache.Cache) {
	mustSet(t, c, "short", []byte("v"), short)
	mustSet(t, c, "long", []byte("v"), long)
	waitExpired(t, c, "short")
	requireValue(t, c, "long", []byte("v"))
}

// testOverwriteReplacesTTL checks that a Set gives the entry the new TTL
// rather than keeping the first one.
func testOverwriteReplacesTTL(t *testing.T, c cache.Cache) {
	mustSet(t, c, "k", []byte("first"), short)
	mustSet(t, c, "k", []byte("second"), long)
	mustSet(t, c, "marker", []byte("v"), short)
	waitExpired(t, c, "marker")
	requireValue(t, c, "k", []byte("second"))
}

// waitExpired polls until key is gone. It fails only if key outlives
// expiryDeadline, far beyond any TTL the suite sets.
func waitExpired(t *testing.T, c cache.Cache, key string) {
	t.Helper()
	deadline := time.Now().Add(expiryDeadline)
	for {
		_, err := c.Get(t.Context(), key)
		switch {
		case errors.Is(err, cache.ErrNotFound):
			return
		case err != nil:
			t.Fatalf("Get(%q): %v", key, err)
		case time.Now().After(deadline):
			t.Fatalf("%q still present after %v; the TTL was %v", key, expiryDeadline, short)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
