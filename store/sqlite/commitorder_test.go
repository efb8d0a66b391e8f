package sqlite_test

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onebox/store"
	"onebox/store/sqlite"
	"onebox/store/storetest"
)

// sequenceEvents is a store whose events behave as rows numbered by a
// PostgreSQL sequence: a write takes its event's ID when it inserts, and
// the event becomes visible when the write commits, a moment later, so
// writes that run at once commit out of ID order. Everything but the
// events is the real store underneath.
//
// With perUser set, a write holds a lock of the event's user from taking
// the ID to the commit, as a transaction-level advisory lock keyed by the
// user would: the fix store.Photos.Events suggests.
type sequenceEvents struct {
	store.Store
	perUser bool

	next  atomic.Int64 // the sequence
	locks sync.Map     // user ID → *sync.Mutex

	mu     sync.Mutex
	events []store.Event // committed, in commit order
}

// write runs fn, the real write, between taking an ID and committing an
// event of userID and photoID with it. An error rolls the event back,
// leaving a gap, as a sequence does.
func (s *sequenceEvents) write(userID string, fn func() (photoID string, created time.Time, err error)) error {
	if s.perUser {
		l, _ := s.locks.LoadOrStore(userID, new(sync.Mutex))
		l.(*sync.Mutex).Lock()
		defer l.(*sync.Mutex).Unlock()
	}
	id := s.next.Add(1)
	photoID, created, err := fn()
	if err != nil {
		return err
	}
	// The rest of the transaction, then COMMIT: long enough for other
	// writers to take IDs and commit meanwhile.
	time.Sleep(rand.N(time.Millisecond))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, store.Event{ID: id, UserID: userID, PhotoID: photoID, CreatedAt: created})
	return nil
}

func (s *sequenceEvents) CreatePhoto(ctx context.Context, p store.CreatePhotoParams) (ph store.Photo, created bool, err error) {
	err = s.write(p.Photo.OwnerID, func() (string, time.Time, error) {
		ph, created, err = s.Store.CreatePhoto(ctx, p)
		return ph.ID, ph.CreatedAt, err
	})
	return ph, created, err
}

func (s *sequenceEvents) FinishPhoto(ctx context.Context, p store.FinishPhotoParams) (ph store.Photo, err error) {
	// The owner is known only from the photo; the suite's writers finish
	// their own photos, so reading it first races with nothing.
	before, err := s.Store.Photo(ctx, store.PhotoParams{ID: p.ID, Freshness: store.MustBeFresh})
	if err != nil {
		return store.Photo{}, err
	}
	err = s.write(before.OwnerID, func() (string, time.Time, error) {
		ph, err = s.Store.FinishPhoto(ctx, p)
		return ph.ID, ph.UpdatedAt, err
	})
	return ph, err
}

func (s *sequenceEvents) Events(ctx context.Context, p store.EventsParams) ([]store.Event, error) {
	if p.Limit < 1 {
		return nil, store.ErrInvalid
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Event
	for _, ev := range s.events {
		if ev.UserID == p.UserID && ev.ID > p.AfterID && (p.PhotoID == "" || ev.PhotoID == p.PhotoID) {
			out = append(out, ev)
		}
	}
	slices.SortFunc(out, func(a, b store.Event) int { return cmp.Compare(a.ID, b.ID) })
	return out[:min(len(out), p.Limit)], nil
}

// TestEventsCommitOrderCheck shows that the suite's commit-order check
// fails on a store whose event IDs do not follow commit order, and
// passes on the same store once each user's writes are serialized.
func TestEventsCommitOrderCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		perUser  bool
		users    int
		wantFail bool
	}{
		{"sequence, one user", false, 1, true},
		{"sequence, three users", false, 3, true},
		{"sequence with a lock per user, three users", true, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Out-of-order commits are a race the check has to catch
			// while it happens: give it a few chances, each on a fresh
			// store. It catches one on the first almost always.
			attempts := 1
			if tt.wantFail {
				attempts = 5
			}
			for i := range attempts {
				s := &sequenceEvents{Store: mustNew(t, sqlite.Options{}), perUser: tt.perUser}
				err := storetest.CheckEventsCommitOrder(t.Context(), s, tt.users)
				switch {
				case !tt.wantFail && err != nil:
					t.Fatalf("CheckEventsCommitOrder: %v", err)
				case tt.wantFail && err != nil:
					t.Logf("attempt %d: CheckEventsCommitOrder failed as it should: %v", i+1, err)
					return
				}
			}
			if tt.wantFail {
				t.Errorf("CheckEventsCommitOrder passed %d times on a store whose events commit out of ID order", attempts)
			}
		})
	}
}
