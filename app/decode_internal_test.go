package app

import (
	"runtime"
	"strings"
	"testing"
)

// TestDuplicateScanIsLinear: the duplicate scan of a body nested 9000
// deep with thousands of repeated names allocates in proportion to the
// body, not to repeats × depth (building every repeat's pointer would
// take about 100 MB here). White-box, to count the bytes one call
// allocates; not parallel, so no other test allocates meanwhile.
func TestDuplicateScanIsLinear(t *testing.T) {
	const depth, repeats = 9000, 7000
	body := []byte(`{"x":` + strings.Repeat("[", depth) + "{" + strings.Repeat(`"a":0,`, repeats) + `"a":0}` + strings.Repeat("]", depth) + "}")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := parseObject(body)
	runtime.ReadMemStats(&after)
	p, ok := err.(*Problem)
	if !ok || p.ErrorsOmitted != repeats-maxFieldErrors {
		t.Fatalf("error %v, want %d repeats omitted", err, repeats-maxFieldErrors)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d-byte body: %d bytes allocated", len(body), alloc)
	if limit := uint64(200 * len(body)); alloc > limit {
		t.Fatalf("%d bytes allocated for a %d-byte body, want at most %d", alloc, len(body), limit)
	}
}
