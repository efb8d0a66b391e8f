package sqlite_test

import (
	"errors"
	"testing"
	"time"

	"onebox/store"
	"onebox/store/sqlite"
)

// TestSentinel: none until written, then the latest time written, to
// the nanosecond; a database without the sentinel's table (from before it,
// opened without migrating, as a restored copy is) has none either.
func TestSentinel(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := mustNew(t, sqlite.Options{})
	if _, err := s.Sentinel(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("before any write: %v, want %v", err, store.ErrNotFound)
	}
	first := time.Date(2026, 12, 7, 3, 0, 0, 123456789, time.UTC)
	for _, at := range []time.Time{first, first.Add(time.Second)} {
		if err := s.WriteSentinel(ctx, at); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Sentinel(ctx); err != nil || !got.Equal(at) {
			t.Fatalf("Sentinel = %s, %v; want %s", got, err, at)
		}
	}
	// An older time, committed later, leaves the newer one.
	if err := s.WriteSentinel(ctx, first); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Sentinel(ctx); err != nil || !got.Equal(first.Add(time.Second)) {
		t.Fatalf("after an older write: Sentinel = %s, %v; want %s", got, err, first.Add(time.Second))
	}
	if _, err := s.Writer().ExecContext(ctx, `DROP TABLE backup_sentinel`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sentinel(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("without the table: %v, want %v", err, store.ErrNotFound)
	}
}
