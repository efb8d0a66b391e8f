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

// TestPruneDead runs PruneDead on a real queue: every job dead for
// longer than DeadKeep goes, in batches smaller than their number, and
// the younger ones stay.
func TestPruneDead(t *testing.T) {
	s, _, _ := newStore(t)
	q := s.Queue(jobsqlite.Options{})
	for range 5 {
		if err := q.Send(t.Context(), jobs.Message{Kind: "k"}, jobs.SendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := q.Receive(t.Context(), "k", 5, time.Minute)
	if err != nil || len(ms) != 5 {
		t.Fatalf("Receive = %d, %v", len(ms), err)
	}
	for _, m := range ms {
		if err := q.DeadLetter(t.Context(), m.Receipt(), "died"); err != nil {
			t.Fatal(err)
		}
	}
	keep := 24 * time.Hour
	o := retention.Options{DeadKeep: keep, Batch: 2, Now: time.Now}
	if n, err := retention.PruneDead(t.Context(), q, o); err != nil || n != 0 {
		t.Fatalf("PruneDead of jobs dead for less than %v = %d, %v; want none", keep, n, err)
	}
	o.Now = func() time.Time { return time.Now().Add(keep + time.Minute) }
	if n, err := retention.PruneDead(t.Context(), q, o); err != nil || n != 5 {
		t.Fatalf("PruneDead a day later = %d, %v; want 5", n, err)
	}
	if dead, err := q.Dead(t.Context(), jobs.DeadFilter{}, 10); err != nil || len(dead) != 0 {
		t.Errorf("Dead after pruning = %d, %v; want none", len(dead), err)
	}
}

// TestRunPrunesDead: with Dead set, each round of Run prunes the jobs
// dead for longer than DeadKeep at its clock's now.
func TestRunPrunesDead(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	befores := make(chan time.Time, 10)
	for _, before := range twoRounds(t, befores, retention.Options{Every: time.Millisecond, Now: func() time.Time { return now }, DeadKeep: 72 * time.Hour,
		Dead: deadPruneFunc(func(_ context.Context, before time.Time, _ int) (int, error) {
			offer(befores, before)
			return 0, nil
		})}) {
		if want := now.Add(-72 * time.Hour); !before.Equal(want) {
			t.Errorf("pruned dead jobs before %v, want %v", before, want)
		}
	}
}

type deadPruneFunc func(context.Context, time.Time, int) (int, error)

func (f deadPruneFunc) PruneDead(ctx context.Context, before time.Time, limit int) (int, error) {
	return f(ctx, before, limit)
}
