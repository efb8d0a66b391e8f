package syncbuf_test

import (
	"fmt"
	"sync"
	"testing"

	"onebox/internal/syncbuf"
)

func TestConcurrentLines(t *testing.T) {
	var b syncbuf.Buffer
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() { fmt.Fprintf(&b, "{\"n\":%d}\n", i) })
	}
	wg.Wait()
	lines, err := b.JSONLines()
	if err != nil || len(lines) != 20 {
		t.Fatalf("JSONLines: %d lines, %v", len(lines), err)
	}
	fmt.Fprintln(&b, "not json")
	if _, err := b.JSONLines(); err == nil {
		t.Fatal("a line that is not JSON: no error")
	}
}
