package cachetest

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"onebox/cache"
)

func testValues(t *testing.T, c cache.Cache) {
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	large := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{})
	_, _ = rng.Read(large)

	tests := []struct {
		name  string
		key   string
		value []byte
	}{
		{"Empty", "empty", []byte{}},
		{"Nil", "nil", nil},
		{"Binary", "binary", allBytes},
		{"BinaryKey", "\x00\xff\n \xc3\x28", []byte("v")},
		{"EmptyKey", "", []byte("v")},
		{"Large", "large", large},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mustSet(t, c, tt.key, tt.value, long)
			got := mustGet(t, c, tt.key)
			// nil and empty are the same value: len is what counts.
			if !bytes.Equal(got, tt.value) {
				t.Fatalf("Get(%q) returned %d bytes, want the %d set", tt.key, len(got), len(tt.value))
			}
		})
	}
}

func testGetReturnsCopy(t *testing.T, c cache.Cache) {
	mustSet(t, c, "k", []byte("abc"), long)
	got := mustGet(t, c, "k")
	got[0] = 'X'
	requireValue(t, c, "k", []byte("abc"))
}

func testSetKeepsCopy(t *testing.T, c cache.Cache) {
	v := []byte("abc")
	mustSet(t, c, "k", v, long)
	v[0] = 'X'
	requireValue(t, c, "k", []byte("abc"))
}
