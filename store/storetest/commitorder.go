package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"onebox/store"
)

// The commit-order check's load: writers × photosPerWriter photos, each
// with two events (its creation and its finish), 200 events in all.
const (
	orderWriters         = 4
	orderPhotosPerWriter = 25
	orderPage            = 7 // small, so a reader pages while writers write
	// orderPoll is how long a reader waits after an empty poll: far
	// shorter than a write, so it still reads in the middle of them.
	orderPoll = 100 * time.Microsecond
)

// testEventsCommitOrder runs CheckEventsCommitOrder with users users.
func testEventsCommitOrder(users int) func(t *testing.T, s store.Store) {
	return func(t *testing.T, s store.Store) {
		if err := CheckEventsCommitOrder(t.Context(), s, users); err != nil {
			t.Fatal(err)
		}
	}
}

// CheckEventsCommitOrder checks that event IDs follow commit order (see
// store.Photos.Events): several writers create and finish photos of
// users users at once, while one reader per user polls Events after the
// last ID it saw, as an SSE stream does. Once the writers are done and
// each reader has read to the end, every reader must have seen each of
// its user's events exactly once, in growing ID order.
//
// It returns what it found wrong instead of failing a test, like
// testing/fstest.TestFS, so that a backend's tests can also show that it
// fails on a store that breaks the contract. The suite runs it with one
// user and with several. s must hold no user with the handles it
// creates ("order-writer-N").
func CheckEventsCommitOrder(ctx context.Context, s store.Store, users int) error {
	if users < 1 {
		return fmt.Errorf("CheckEventsCommitOrder: %d users", users)
	}
	owners := make([]string, users)
	for i := range owners {
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		_, err = s.CreateUser(ctx, store.CreateUserParams{
			ID: id.String(), Handle: fmt.Sprintf("order-writer-%d", i), DisplayName: "writer",
			PasswordHash: "x", Now: baseTime(),
		})
		if err != nil {
			return fmt.Errorf("CreateUser: %w", err)
		}
		owners[i] = id.String()
	}
	// Writer w's photo j belongs to owner (w+j) % users, so with several
	// users every writer writes for each and every user has several
	// writers.
	photos := make([][]store.CreatePhotoParams, orderWriters)
	for w := range photos {
		photos[w] = make([]store.CreatePhotoParams, orderPhotosPerWriter)
		for j := range photos[w] {
			p, err := newPhotoParams(owners[(w+j)%users], time.Duration(j)*time.Second)
			if err != nil {
				return err
			}
			photos[w][j] = p
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	writers, wctx := errgroup.WithContext(gctx)
	var done atomic.Bool // set once every writer has returned
	start := make(chan struct{})
	for _, mine := range photos {
		writers.Go(func() error {
			<-start
			for _, p := range mine {
				if _, _, err := s.CreatePhoto(wctx, p); err != nil {
					return fmt.Errorf("CreatePhoto: %w", err)
				}
				if _, err := s.FinishPhoto(wctx, readyParams(p.Photo.ID, time.Minute)); err != nil {
					return fmt.Errorf("FinishPhoto: %w", err)
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		err := writers.Wait()
		done.Store(true)
		return err
	})

	// Each reader polls until a poll that began after the writers were
	// done comes back empty. A store that never runs dry (it repeats an
	// event) is cut off after as many further polls as there are events.
	seen := make([][]store.Event, users)
	for u, owner := range owners {
		g.Go(func() error {
			var after int64
			extra := 0
			for {
				finished := done.Load()
				evs, err := s.Events(gctx, store.EventsParams{UserID: owner, AfterID: after, Limit: orderPage})
				if err != nil {
					return fmt.Errorf("Events: %w", err)
				}
				seen[u] = append(seen[u], evs...)
				if len(evs) > 0 {
					after = evs[len(evs)-1].ID
				} else if !finished {
					// Nothing new: leave the processors to the writers
					// for a moment, as an SSE stream waits between polls.
					time.Sleep(orderPoll)
				}
				if finished {
					if len(evs) == 0 {
						return nil
					}
					if extra++; extra > 2*orderWriters*orderPhotosPerWriter {
						return fmt.Errorf("user %d of %d: Events after %d never runs dry once the writers are done", u+1, users, after)
					}
				}
			}
		})
	}
	close(start)
	if err := g.Wait(); err != nil {
		return err
	}

	want := make([]map[string]int, users) // photo ID → events, by owner
	for u := range want {
		want[u] = map[string]int{}
	}
	for w := range photos {
		for j, p := range photos[w] {
			want[(w+j)%users][p.Photo.ID] = 2
		}
	}
	var errs []error
	for u, owner := range owners {
		if err := checkSeen(ctx, s, owner, seen[u], want[u]); err != nil {
			errs = append(errs, fmt.Errorf("user %d of %d: %w", u+1, users, err))
		}
	}
	return errors.Join(errs...)
}

// checkSeen compares the events a reader of owner saw with want, the
// number of events of each photo. IDs are compared as integers.
func checkSeen(ctx context.Context, s store.Store, owner string, seen []store.Event, want map[string]int) error {
	var errs []error
	got := map[string]int{}
	for i, ev := range seen {
		if ev.UserID != owner {
			errs = append(errs, fmt.Errorf("event %d is of user %s", ev.ID, ev.UserID))
		}
		if i > 0 && ev.ID <= seen[i-1].ID {
			errs = append(errs, fmt.Errorf("event %d came after event %d: IDs must grow", ev.ID, seen[i-1].ID))
		}
		got[ev.PhotoID]++
	}
	for id, n := range want {
		if got[id] != n {
			errs = append(errs, fmt.Errorf("photo %s: the reader saw %d events, want %d", id, got[id], n))
		}
	}
	for id, n := range got {
		if _, ok := want[id]; !ok {
			errs = append(errs, fmt.Errorf("photo %s: the reader saw %d events of a photo no writer made", id, n))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	// Name the events that are there now but that the reader passed: they
	// became visible after an event with a larger ID.
	all, err := s.Events(ctx, store.EventsParams{UserID: owner, Limit: 10 * orderWriters * orderPhotosPerWriter})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("Events: %w", err))...)
	}
	seenIDs := map[int64]bool{}
	for _, ev := range seen {
		seenIDs[ev.ID] = true
	}
	var skipped []int64
	for _, ev := range all {
		if !seenIDs[ev.ID] {
			skipped = append(skipped, ev.ID)
		}
	}
	if len(skipped) > 0 {
		errs = append([]error{fmt.Errorf("the reader never saw events %v, which Events returns now: "+
			"they became visible (or were returned) after an event with a larger ID", firstN(skipped, 10))}, errs...)
	}
	return errors.Join(firstN(errs, 10)...)
}

// firstN is at most the first n of s, to keep a failure readable.
func firstN[T any](s []T, n int) []T {
	return slices.Clip(s[:min(len(s), n)])
}
