// Package syncbuf is a bytes.Buffer that goroutines can share: what a
// test hands a logger to write to while the test reads what it wrote.
package syncbuf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// Buffer is safe for concurrent use. The zero value is empty and ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// JSONLines decodes what was written so far as one JSON object a line,
// the shape of slog's JSON handler.
func (b *Buffer) JSONLines() ([]map[string]any, error) {
	var out []map[string]any
	for l := range strings.Lines(b.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			return nil, fmt.Errorf("line %q: %w", l, err)
		}
		out = append(out, m)
	}
	return out, nil
}
