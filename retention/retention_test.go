package retention_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"onebox/jobs"
	"onebox/retention"
	"onebox/store"
	"onebox/store/sqlite"
)

// TestPrune runs Prune on a real store: every event older than Keep goes,
// in batches smaller than their number, and the newer ones stay.
func TestPrune(t *testing.T) {
	s, err := sqlite.New(t.Context(), sqlite.Options{Path: filepath.Join(t.TempDir(), "r.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	u, err := s.CreateUser(t.Context(), store.CreateUserParams{ID: uuid.Must(uuid.NewV7()).String(), Handle: "ann", DisplayName: "Ann", PasswordHash: "x", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	// Seven events ten days old and two an hour old: one per photo.
	for _, age := range []time.Duration{240, 240, 240, 240, 240, 240, 240, 1, 1} {
		id, at := uuid.Must(uuid.NewV7()).String(), now.Add(-age*time.Hour)
		_, _, err := s.CreatePhoto(t.Context(), store.CreatePhotoParams{Photo: store.Photo{
			ID: id, OwnerID: u.ID, Status: store.PhotoProcessing, OriginalKey: "originals/" + id,
			ContentType: "image/jpeg", Size: 1, CreatedAt: at, UpdatedAt: at,
		}, Job: jobs.Message{Kind: "test", Payload: []byte("{}")}})
		if err != nil {
			t.Fatal(err)
		}
	}
	n, err := retention.Prune(t.Context(), s, retention.Options{Keep: 7 * 24 * time.Hour, Batch: 3, Now: func() time.Time { return now }})
	if err != nil || n != 7 {
		t.Fatalf("Prune = %d, %v; want 7", n, err)
	}
	left, err := s.Events(t.Context(), store.EventsParams{UserID: u.ID, Limit: 100})
	if err != nil || len(left) != 2 {
		t.Fatalf("events left: %d, %v; want 2", len(left), err)
	}
}

// TestRunStops: Run prunes at once, reports a failure without stopping,
// and returns when its context ends.
func TestRunStops(t *testing.T) {
	calls := make(chan struct{}, 10)
	p := pruneFunc(func(context.Context, time.Time, int) (int, error) {
		calls <- struct{}{}
		return 0, errors.New("disk on fire")
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		retention.Run(ctx, p, retention.Options{Keep: time.Hour, Every: time.Millisecond})
		close(done)
	}()
	<-calls
	<-calls // it went on after the failure
	cancel()
	<-done
}

type pruneFunc func(context.Context, time.Time, int) (int, error)

func (f pruneFunc) PruneEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	return f(ctx, before, limit)
}

// TestRunSweepsTemp: with events kept forever (a nil Pruner), Run still
// sweeps temp files older than an hour on each round.
func TestRunSweepsTemp(t *testing.T) {
	ages := make(chan time.Duration, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		retention.Run(ctx, nil, retention.Options{Every: time.Millisecond, Temp: sweepFunc(func(age time.Duration) (int, error) {
			ages <- age
			return 1, nil
		})})
		close(done)
	}()
	for range 2 {
		if age := <-ages; age != time.Hour {
			t.Errorf("swept files older than %v, want 1h", age)
		}
	}
	cancel()
	<-done
}

type sweepFunc func(time.Duration) (int, error)

func (f sweepFunc) SweepTemp(age time.Duration) (int, error) { return f(age) }
