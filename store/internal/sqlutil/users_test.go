package sqlutil_test

import (
	"errors"
	"testing"

	"onebox/store"
	"onebox/store/internal/sqlutil"
)

func TestWhyNoUpdate(t *testing.T) {
	t.Parallel()
	photo := "p1"
	tests := []struct {
		name     string
		p        store.UpdateUserParams
		version  int64
		avatarOK bool
		want     error
	}{
		{"version differs", store.UpdateUserParams{IfVersion: 2, AvatarID: &photo}, 3, false, store.ErrVersionMismatch},
		{"avatar not ready", store.UpdateUserParams{IfVersion: 3, AvatarID: &photo}, 3, false, store.ErrInvalid},
		{"version came later", store.UpdateUserParams{IfVersion: 3}, 3, true, store.ErrVersionMismatch},
		{"avatar became ready", store.UpdateUserParams{AvatarID: &photo}, 1, true, store.ErrInvalid},
	}
	for _, tt := range tests {
		if err := sqlutil.WhyNoUpdate("test", tt.p, tt.version, tt.avatarOK); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestAvatarOf(t *testing.T) {
	t.Parallel()
	photo, clear := "p1", ""
	tests := []struct {
		name string
		id   *string
		want string
	}{
		{"sets none", nil, ""},
		{"clears", &clear, ""},
		{"sets one", &photo, "p1"},
	}
	for _, tt := range tests {
		if got := sqlutil.AvatarOf(store.UpdateUserParams{AvatarID: tt.id}); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}
