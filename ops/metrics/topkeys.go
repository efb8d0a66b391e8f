package metrics

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
)

// TopRejectedKeys is how many of a policy's most rejected keys are
// exposed; topKeysTracked, how many the sketch keeps to find them. A
// client whose rejections are more than 1/topKeysTracked of the policy's
// is always among the kept ones.
const (
	TopRejectedKeys = 5
	topKeysTracked  = 64
)

// topKeys is a space-saving sketch (Metwally et al.) of one policy's
// rejected keys: a bounded map that, when full, gives a new key the slot
// of the least counted one, and that one's count plus one. Memory and
// series stay bounded whatever the clients; a key rejected often stays.
type topKeys struct {
	mu     sync.Mutex
	counts map[string]uint64
}

func (t *topKeys) add(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.counts[key]; ok || len(t.counts) < topKeysTracked {
		t.counts[key]++
		return
	}
	// Full: a scan of 64 entries, only for a key not already kept, and
	// only on a rejection, which is already the cheap way out.
	minKey, minCount := "", uint64(0)
	for k, c := range t.counts {
		if minKey == "" || c < minCount || c == minCount && k < minKey {
			minKey, minCount = k, c
		}
	}
	delete(t.counts, minKey)
	t.counts[key] = minCount + 1
}

// top returns the n most counted keys, most first (ties by key).
func (t *topKeys) top(n int) []keyCount {
	t.mu.Lock()
	out := make([]keyCount, 0, len(t.counts))
	for k, c := range t.counts {
		out = append(out, keyCount{k, c})
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b keyCount) int { return cmp.Or(cmp.Compare(b.count, a.count), cmp.Compare(a.key, b.key)) })
	return out[:min(n, len(out))]
}

type keyCount struct {
	key   string
	count uint64
}

// writeTopRejected writes RateLimitTopRejected: the set's own series
// cannot drop a key that left the top, so these lines are written from
// the sketches at each scrape.
func (m *Metrics) writeTopRejected(w io.Writer) {
	byPolicy := map[string][]keyCount{}
	m.topKeys.Range(func(k, v any) bool {
		byPolicy[k.(string)] = v.(*topKeys).top(TopRejectedKeys)
		return true
	})
	if len(byPolicy) == 0 {
		return
	}
	fmt.Fprintf(w, "# HELP %s rejections of the most rejected keys per policy, since start (space-saving estimate)\n# TYPE %s gauge\n",
		RateLimitTopRejected, RateLimitTopRejected)
	for _, p := range slices.Sorted(maps.Keys(byPolicy)) {
		for _, kc := range byPolicy[p] {
			fmt.Fprintf(w, "%s%s %d\n", RateLimitTopRejected, labels("policy", p, "key", kc.key), kc.count)
		}
	}
}
