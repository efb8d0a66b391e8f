package cachetest

import (
	"fmt"
	"testing"
	"time"

	"onebox/cache"
)

// BenchKeys fills c with 1024 entries of 128 bytes and returns their
// keys: the data every backend's benchmarks run on, so their figures
// compare.
func BenchKeys(b *testing.B, c cache.Cache) []string {
	b.Helper()
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("key:%d", i)
		if err := c.Set(b.Context(), keys[i], make([]byte, 128), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	return keys
}

// BenchGet runs parallel Gets of BenchKeys's entries on c, the loop every
// backend's BenchmarkGet shares.
func BenchGet(b *testing.B, c cache.Cache) {
	keys := BenchKeys(b, c)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := c.Get(b.Context(), keys[i%len(keys)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
