// Package cachetest is the conformance suite for cache.Cache: every
// backend's tests call Run, and a change to the contract lands here first.
package cachetest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"onebox/cache"
)

const (
	// long is a TTL no test outlives.
	long = time.Hour
	// short is a TTL tests wait out; expiryDeadline is how long they wait
	// for it, generous so that a loaded machine does not fail them.
	short          = 50 * time.Millisecond
	expiryDeadline = 5 * time.Second
)

// Run runs the suite against caches made by newCache, a fresh one per
// subtest (newCache may register its own clean-up with t.Cleanup). The
// caches must hold at least 4 MiB, and the subtests run in parallel.
func Run(t *testing.T, newCache func(t *testing.T) cache.Cache) {
	t.Helper()
	tests := []struct {
		name string
		test func(t *testing.T, c cache.Cache)
	}{
		{"RoundTrip", testRoundTrip},
		{"Miss", testMiss},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"DeleteMissing", testDeleteMissing},
		{"Concurrent", testConcurrent},
		{"Values", testValues},
		{"GetReturnsCopy", testGetReturnsCopy},
		{"SetKeepsCopy", testSetKeepsCopy},
		{"Expiry", testExpiry},
		{"OverwriteReplacesTTL", testOverwriteReplacesTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, newCache(t))
		})
	}
}

func mustSet(t *testing.T, c cache.Cache, key string, value []byte, ttl time.Duration) {
	t.Helper()
	if err := c.Set(t.Context(), key, value, ttl); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, c cache.Cache, key string) []byte {
	t.Helper()
	v, err := c.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v
}

func mustDelete(t *testing.T, c cache.Cache, key string) {
	t.Helper()
	if err := c.Delete(t.Context(), key); err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
}

// requireValue checks that key holds want.
func requireValue(t *testing.T, c cache.Cache, key string, want []byte) {
	t.Helper()
	if got := mustGet(t, c, key); !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}

// requireMiss checks that Get of key fails with cache.ErrNotFound.
func requireMiss(t *testing.T, c cache.Cache, key string) {
	t.Helper()
	if v, err := c.Get(t.Context(), key); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, v, err)
	}
}
