package store_test

import (
	"errors"
	"fmt"
	"testing"

	"onebox/store"
)

// TestFailed: answers about the data, wrapped or not, are not failures
// of the database; anything else is.
func TestFailed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{store.ErrNotFound, false},
		{store.ErrConflict, false},
		{store.ErrVersionMismatch, false},
		{store.ErrInvalid, false},
		{fmt.Errorf("sqlite photos_create: %w", store.ErrIdempotencyMismatch), false},
		{store.ErrBusy, true},
		{errors.New("disk I/O error"), true},
	}
	for _, tt := range tests {
		if got := store.Failed(tt.err); got != tt.want {
			t.Errorf("Failed(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
