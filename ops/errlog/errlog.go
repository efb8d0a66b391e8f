// Package errlog keeps the last server errors (HTTP 5xx) in memory, with
// their request ids, for the dashboard's "recent errors": an operator
// finds a failed request there and greps the logs for its id. It is
// bounded: the oldest entry gives way.
package errlog

import (
	"slices"
	"sync"
	"time"
)

// Entry is one failed request.
type Entry struct {
	Time      time.Time
	Route     string // "GET /v1/users/:id"
	Status    int
	Message   string
	RequestID string
}

// Log is a ring of the last entries. A nil *Log records nothing. It is
// safe for concurrent use.
type Log struct {
	mu      sync.Mutex
	entries []Entry
	next    int
	full    bool
}

// New returns a Log that keeps the last n entries (at least 1).
func New(n int) *Log { return &Log{entries: make([]Entry, max(n, 1))} }

// Add records e.
func (l *Log) Add(e Entry) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.entries[l.next] = e
	l.next = (l.next + 1) % len(l.entries)
	l.full = l.full || l.next == 0
	l.mu.Unlock()
}

// Recent returns the entries kept, newest first.
func (l *Log) Recent() []Entry {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Entry
	if l.full {
		out = append(out, l.entries[l.next:]...)
	}
	out = append(out, l.entries[:l.next]...)
	slices.Reverse(out)
	return out
}
