// Package moderationtest is the conformance suite every
// moderation.Moderator implementation runs in its tests.
package moderationtest

import (
	"context"
	"errors"
	"image"
	"sync"
	"testing"

	"onebox/moderation"
)

// Run checks m against the Moderator contract: it must refuse blocked
// with a reason, allow allowed, report a done context as an error, and
// give the same verdicts when called concurrently.
func Run(t *testing.T, m moderation.Moderator, blocked, allowed image.Image) {
	t.Helper()
	t.Run("refuses with a reason", func(t *testing.T) {
		t.Parallel()
		v, err := m.Moderate(context.Background(), blocked)
		if err != nil || v.Allowed || v.Reason == "" {
			t.Fatalf("Moderate(blocked) = %+v, %v; want a refusal with a reason", v, err)
		}
	})
	t.Run("allows", func(t *testing.T) {
		t.Parallel()
		v, err := m.Moderate(context.Background(), allowed)
		if err != nil || !v.Allowed || v.Reason != "" {
			t.Fatalf("Moderate(allowed) = %+v, %v; want allowed without a reason", v, err)
		}
	})
	t.Run("done context", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if v, err := m.Moderate(ctx, allowed); !errors.Is(err, context.Canceled) || v.Allowed {
			t.Fatalf("Moderate with a cancelled context = %+v, %v; want context.Canceled and no approval", v, err)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		t.Parallel()
		var wg sync.WaitGroup
		for i := range 8 {
			img, want := blocked, false
			if i%2 == 0 {
				img, want = allowed, true
			}
			wg.Go(func() {
				v, err := m.Moderate(context.Background(), img)
				if err != nil || v.Allowed != want {
					t.Errorf("concurrent Moderate = %+v, %v; want Allowed %v", v, err, want)
				}
			})
		}
		wg.Wait()
	})
}
