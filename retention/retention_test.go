package retention_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/retention"
	"onebox/store"
	"onebox/store/sqlite"
)

// TestPrune runs Prune on a real store: every event older than Keep goes,
// in batches smaller than their number, and the newer ones stay.
func TestPrune(t *testing.T) {
	s, u, now := newStore(t)
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

// TestPruneKeys runs PruneKeys on a real store: every idempotency key
// expired at now goes, in batches smaller than their number; the live
// ones and every photo stay, and a pruned key uploads anew.
func TestPruneKeys(t *testing.T) {
	s, u, now := newStore(t)
	create := func(key string, at, expires time.Time) (store.Photo, bool, error) {
		id := uuid.Must(uuid.NewV7()).String()
		return s.CreatePhoto(t.Context(), store.CreatePhotoParams{
			Photo: store.Photo{ID: id, OwnerID: u.ID, Status: store.PhotoProcessing, OriginalKey: "originals/" + id,
				ContentType: "image/jpeg", Size: 1, CreatedAt: at, UpdatedAt: at},
			Idempotency: store.Idempotency{Key: key, Digest: "sha256:" + key, ExpiresAt: expires},
			Job:         jobs.Message{Kind: "test", Payload: []byte("{}")},
		})
	}
	// Five keys taken two days ago for a day, two taken an hour ago.
	for i, age := range []time.Duration{48, 48, 48, 48, 48, 1, 1} {
		at := now.Add(-age * time.Hour)
		if _, _, err := create(fmt.Sprint("k", i), at, at.Add(24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := retention.PruneKeys(t.Context(), s, retention.Options{Batch: 2, Now: func() time.Time { return now }})
	if err != nil || n != 5 {
		t.Fatalf("PruneKeys = %d, %v; want 5", n, err)
	}
	photos, err := s.ListPhotos(t.Context(), store.ListPhotosParams{OwnerID: u.ID, Limit: 100})
	if err != nil || len(photos) != 7 {
		t.Fatalf("photos left: %d, %v; want all 7", len(photos), err)
	}
	// The live keys still answer; a pruned one uploads anew, even if the
	// clock were to say it had not expired.
	for i := 5; i < 7; i++ {
		if _, err := s.PhotoByIdempotencyKey(t.Context(), store.IdempotencyParams{OwnerID: u.ID, Key: fmt.Sprint("k", i), Now: now}); err != nil {
			t.Errorf("live key k%d: %v", i, err)
		}
	}
	at := now.Add(-47 * time.Hour)
	if _, created, err := create("k0", at, now); err != nil || !created {
		t.Errorf("upload with a pruned key: created %v, %v; want a new photo", created, err)
	}
}

// TestRunPrunesKeys: with events kept forever (a nil Pruner), Run still
// prunes the keys expired at its clock's now on each round.
func TestRunPrunesKeys(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	nows := make(chan time.Time, 10)
	for _, at := range twoRounds(t, nows, retention.Options{Every: time.Millisecond, Now: func() time.Time { return now },
		Keys: keyPruneFunc(func(_ context.Context, at time.Time, _ int) (int, error) {
			offer(nows, at)
			return 0, nil
		})}) {
		if !at.Equal(now) {
			t.Errorf("pruned keys expired at %v, want %v", at, now)
		}
	}
}

// twoRounds runs Run with o until the pruner under test has sent two
// times on got, and returns them.
func twoRounds(t *testing.T, got <-chan time.Time, o retention.Options) []time.Time {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		retention.Run(ctx, nil, o)
		close(done)
	}()
	defer func() { cancel(); <-done }()
	var out []time.Time
	for range 2 {
		select {
		case at := <-got:
			out = append(out, at)
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not prune")
		}
	}
	return out
}

// offer sends at unless c is full: the test has what it needs.
func offer(c chan<- time.Time, at time.Time) {
	select {
	case c <- at:
	default:
	}
}

type keyPruneFunc func(context.Context, time.Time, int) (int, error)

func (f keyPruneFunc) PruneIdempotencyKeys(ctx context.Context, now time.Time, limit int) (int, error) {
	return f(ctx, now, limit)
}

// newStore opens a store in a temporary directory with one user, made at
// the time it returns.
func newStore(t *testing.T) (*sqlite.Store, store.User, time.Time) {
	t.Helper()
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
	return s, u, now
}

// TestPruneDead runs PruneDead on a real queue of five jobs dead now:
// those dead for longer than DeadKeep go, then the oldest beyond
// DeadMax, in batches smaller than their number; a zero DeadKeep or
// DeadMax bounds nothing.
func TestPruneDead(t *testing.T) {
	t.Parallel()
	const keep = 24 * time.Hour
	tests := []struct {
		name     string
		keep     time.Duration
		max      int
		later    time.Duration // how long after they died the sweep runs
		wantN    int
		wantLeft []string // newest first
	}{
		{"younger than keep", keep, 0, 0, 0, []string{"died 4", "died 3", "died 2", "died 1", "died 0"}},
		{"older than keep", keep, 0, keep + time.Minute, 5, nil},
		{"beyond max", keep, 2, 0, 3, []string{"died 4", "died 3"}},
		{"beyond max, no age bound", 0, 2, 0, 3, []string{"died 4", "died 3"}},
		{"max above their number", keep, 10, 0, 0, []string{"died 4", "died 3", "died 2", "died 1", "died 0"}},
		{"older than keep and beyond max", keep, 2, keep + time.Minute, 5, nil},
		{"no bound", 0, 0, 0, 0, []string{"died 4", "died 3", "died 2", "died 1", "died 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := newDeadQueue(t, 5)
			o := retention.Options{DeadKeep: tt.keep, DeadMax: tt.max, Batch: 2, Now: func() time.Time { return time.Now().Add(tt.later) }}
			if n, err := retention.PruneDead(t.Context(), q, o); err != nil || n != tt.wantN {
				t.Fatalf("PruneDead = %d, %v; want %d", n, err, tt.wantN)
			}
			dead, err := q.Dead(t.Context(), jobs.DeadFilter{}, 10)
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, d := range dead {
				left = append(left, d.LastError)
			}
			if fmt.Sprint(left) != fmt.Sprint(tt.wantLeft) {
				t.Errorf("Dead after pruning = %q, want %q", left, tt.wantLeft)
			}
		})
	}
}

// newDeadQueue returns a queue with n jobs dead now, "died 0" the oldest.
func newDeadQueue(t *testing.T, n int) *jobsqlite.Queue {
	t.Helper()
	s, _, _ := newStore(t)
	q := s.Queue(jobsqlite.Options{})
	for i := range n {
		if err := q.Send(t.Context(), jobs.Message{Kind: "k"}, jobs.SendOptions{}); err != nil {
			t.Fatal(err)
		}
		ms, err := q.Receive(t.Context(), "k", 1, time.Minute)
		if err != nil || len(ms) != 1 {
			t.Fatalf("Receive = %d, %v", len(ms), err)
		}
		if err := q.DeadLetter(t.Context(), ms[0].Receipt(), fmt.Sprint("died ", i)); err != nil {
			t.Fatal(err)
		}
	}
	return q
}

// TestRunPrunesDead: with Dead set, each round of Run prunes the jobs
// dead for longer than DeadKeep at its clock's now, then those beyond
// DeadMax.
func TestRunPrunesDead(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	befores, keeps := make(chan time.Time, 10), make(chan int, 10)
	dead := deadPruner{
		before: func(_ context.Context, before time.Time, _ int) (int, error) {
			offer(befores, before)
			return 0, nil
		},
		beyond: func(_ context.Context, keep, _ int) (int, error) {
			select {
			case keeps <- keep:
			default:
			}
			return 0, nil
		},
	}
	for _, before := range twoRounds(t, befores, retention.Options{Every: time.Millisecond, Now: func() time.Time { return now }, DeadKeep: 72 * time.Hour, DeadMax: 500, Dead: dead}) {
		if want := now.Add(-72 * time.Hour); !before.Equal(want) {
			t.Errorf("pruned dead jobs before %v, want %v", before, want)
		}
	}
	// The first round's count bound came before the second's age bound.
	select {
	case keep := <-keeps:
		if keep != 500 {
			t.Errorf("pruned dead jobs beyond %d, want 500", keep)
		}
	default:
		t.Error("Run did not prune dead jobs beyond DeadMax")
	}
}

type deadPruner struct {
	before func(context.Context, time.Time, int) (int, error)
	beyond func(context.Context, int, int) (int, error)
}

func (d deadPruner) PruneDead(ctx context.Context, before time.Time, limit int) (int, error) {
	return d.before(ctx, before, limit)
}

func (d deadPruner) PruneDeadBeyond(ctx context.Context, keep, limit int) (int, error) {
	return d.beyond(ctx, keep, limit)
}
