package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"onebox/store"
)

func eventCases() []testCase {
	return []testCase{
		{"Order", testEventsOrder},
		{"IDsNeverReused", testEventIDsNeverReused},
		{"Prune", testPruneEvents},
		{"CommitOrderOneUser", testEventsCommitOrder(1)},
		{"CommitOrderThreeUsers", testEventsCommitOrder(3)},
	}
}

func mustEvents(t *testing.T, s store.Store, p store.EventsParams) []store.Event {
	t.Helper()
	evs, err := s.Events(t.Context(), p)
	wantErr(t, "Events", err, nil)
	return evs
}

func mustLastEventID(t *testing.T, s store.Store, userID string) int64 {
	t.Helper()
	id, err := s.LastEventID(t.Context(), userID)
	wantErr(t, "LastEventID", err, nil)
	return id
}

// checkEvents fails unless got has want's users, photos and times, in
// order, with growing IDs. It returns got.
func checkEvents(t *testing.T, what string, got, want []store.Event) []store.Event {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d events %+v, want %d", what, len(got), got, len(want))
	}
	for i := range got {
		if i > 0 && got[i].ID <= got[i-1].ID {
			t.Errorf("%s: event IDs %d then %d, want growing", what, got[i-1].ID, got[i].ID)
		}
		want[i].ID = got[i].ID
		checkRow(t, fmt.Sprintf("%s: event %d", what, i), got[i], want[i],
			func(e *store.Event) []*time.Time { return []*time.Time{&e.CreatedAt} })
	}
	return got
}

// testEventsOrder: a photo's creation, finish and deletion each write
// one event of its owner, in order; Events pages through them after an
// id, by photo or not, and LastEventID is the newest.
func testEventsOrder(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	other := mustCreateUser(t, s, "Bob")
	if id := mustLastEventID(t, s, u.ID); id != 0 {
		t.Errorf("LastEventID before any event = %d, want 0", id)
	}
	if evs := mustEvents(t, s, store.EventsParams{UserID: u.ID, Limit: 10}); len(evs) != 0 {
		t.Errorf("Events before any event = %+v, want none", evs)
	}

	p1 := mustCreatePhoto(t, s, u.ID, time.Minute)
	mustCreatePhoto(t, s, other.ID, 2*time.Minute)
	p2 := mustCreatePhoto(t, s, u.ID, 3*time.Minute)
	mustFinishReady(t, s, p1.ID, 4*time.Minute)
	_, _, err := s.DeletePhoto(t.Context(), store.DeletePhotoParams{ID: p2.ID, OwnerID: u.ID, Now: baseTime().Add(5 * time.Minute)})
	wantErr(t, "DeletePhoto", err, nil)

	event := func(photoID string, minutes int) store.Event {
		return store.Event{UserID: u.ID, PhotoID: photoID, CreatedAt: baseTime().Add(time.Duration(minutes) * time.Minute)}
	}
	all := checkEvents(t, "Events", mustEvents(t, s, store.EventsParams{UserID: u.ID, Limit: 100}), []store.Event{
		event(p1.ID, 1), event(p2.ID, 3), event(p1.ID, 4), event(p2.ID, 5),
	})
	if id := mustLastEventID(t, s, u.ID); id != all[3].ID {
		t.Errorf("LastEventID = %d, want %d", id, all[3].ID)
	}

	tests := []struct {
		name string
		p    store.EventsParams
		want []store.Event
	}{
		{"after the first", store.EventsParams{AfterID: all[0].ID, Limit: 100}, all[1:]},
		{"after the last", store.EventsParams{AfterID: all[3].ID, Limit: 100}, nil},
		{"limited", store.EventsParams{Limit: 2}, all[:2]},
		{"after, limited", store.EventsParams{AfterID: all[1].ID, Limit: 1}, all[2:3]},
		{"one photo", store.EventsParams{PhotoID: p1.ID, Limit: 100}, []store.Event{all[0], all[2]}},
		{"one photo, after", store.EventsParams{PhotoID: p2.ID, AfterID: all[1].ID, Limit: 100}, all[3:]},
		{"one photo, limited", store.EventsParams{PhotoID: p2.ID, Limit: 1}, all[1:2]},
		{"another user's photo", store.EventsParams{PhotoID: p1.ID, Limit: 100, UserID: other.ID}, nil},
	}
	for _, tt := range tests {
		if tt.p.UserID == "" {
			tt.p.UserID = u.ID
		}
		got := mustEvents(t, s, tt.p)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: Events = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// testEventIDsNeverReused: event IDs grow across the whole store, even
// after the newest events are deleted with their user, so a client that
// resumes after an ID it saw misses nothing.
func testEventIDsNeverReused(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	other := mustCreateUser(t, s, "Bob")
	mustCreatePhoto(t, s, u.ID, 0)
	mustCreatePhoto(t, s, other.ID, 0)
	theirs := mustLastEventID(t, s, other.ID)
	if mine := mustLastEventID(t, s, u.ID); theirs <= mine {
		t.Fatalf("a later event of another user has ID %d, not above %d", theirs, mine)
	}
	wantErr(t, "DeleteUser", s.DeleteUser(t.Context(), store.DeleteUserParams{ID: other.ID}), nil)

	mustCreatePhoto(t, s, u.ID, time.Minute)
	if id := mustLastEventID(t, s, u.ID); id <= theirs {
		t.Errorf("event ID %d after deleting event %d: IDs must never be reused", id, theirs)
	}
}

// testPruneEvents: PruneEvents deletes the oldest events before a time,
// at most limit at a time, keeps the newer ones and LastEventID, and
// refuses a limit below 1.
func testPruneEvents(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	other := mustCreateUser(t, s, "Bob")
	p1 := mustCreatePhoto(t, s, u.ID, time.Minute)
	mustCreatePhoto(t, s, other.ID, 2*time.Minute)
	p3 := mustCreatePhoto(t, s, u.ID, 3*time.Minute)
	mustFinishReady(t, s, p1.ID, 4*time.Minute)
	last := mustLastEventID(t, s, u.ID)

	_, err := s.PruneEvents(t.Context(), baseTime(), 0)
	wantErr(t, "PruneEvents with limit 0", err, store.ErrInvalid)

	cut := baseTime().Add(150 * time.Second) // after the first two events
	for i, want := range []int{1, 1, 0} {
		n, err := s.PruneEvents(t.Context(), cut, 1)
		wantErr(t, "PruneEvents", err, nil)
		if n != want {
			t.Fatalf("PruneEvents call %d deleted %d, want %d", i+1, n, want)
		}
	}
	if evs := mustEvents(t, s, store.EventsParams{UserID: other.ID, Limit: 10}); len(evs) != 0 {
		t.Errorf("Bob's old event survived: %+v", evs)
	}
	event := func(photoID string, minutes int) store.Event {
		return store.Event{UserID: u.ID, PhotoID: photoID, CreatedAt: baseTime().Add(time.Duration(minutes) * time.Minute)}
	}
	checkEvents(t, "Events after the prune", mustEvents(t, s, store.EventsParams{UserID: u.ID, Limit: 10}),
		[]store.Event{event(p3.ID, 3), event(p1.ID, 4)})
	if id := mustLastEventID(t, s, u.ID); id != last {
		t.Errorf("LastEventID after the prune = %d, want %d", id, last)
	}
	n, err := s.PruneEvents(t.Context(), baseTime().Add(time.Hour), 10)
	wantErr(t, "PruneEvents of all", err, nil)
	if n != 2 {
		t.Errorf("PruneEvents of all deleted %d, want 2", n)
	}
}
