package sqlite_test

import (
	"errors"
	"testing"
	"time"

	"onebox/store"
	"onebox/store/sqlite"
)

// TestReprocessAndLose: a ready photo goes back to processing without
// variants, with an event and its job enqueued in the same transaction;
// one already processing is not found (its job is queued); a lost photo
// is rejected with the reason. Photos lists them all with their state.
func TestReprocessAndLose(t *testing.T) {
	t.Parallel()
	s := mustNew(t, sqlite.Options{})
	ctx := t.Context()
	u := mustCreateUser(t, s)
	ready := mustCreatePhoto(t, s, photoParams(t, u.ID))
	lost := mustCreatePhoto(t, s, photoParams(t, u.ID))
	if _, err := s.FinishPhoto(ctx, store.FinishPhotoParams{
		ID: ready.ID, Status: store.PhotoReady, Width: 2, Height: 2, Now: time.Now(),
		Variants: []store.Variant{{Name: "w128", Key: "photos/" + ready.ID + "/w128.jpg", Width: 2, Height: 2, Size: 1, ContentType: "image/jpeg"}},
	}); err != nil {
		t.Fatal(err)
	}
	before, err := s.LastEventID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	jobsBefore, err := s.Enqueued(ctx, processKind)
	if err != nil {
		t.Fatal(err)
	}

	ph, err := s.ReprocessPhoto(ctx, ready.ID, processJob(ready.ID), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if ph.Status != store.PhotoProcessing || len(ph.Variants) != 0 || ph.Width != 0 {
		t.Errorf("ReprocessPhoto = %+v, want processing without variants", ph)
	}
	jobsAfter, err := s.Enqueued(ctx, processKind)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobsAfter) != len(jobsBefore)+1 || jobsAfter[len(jobsAfter)-1].RequestID != "req-"+ready.ID {
		t.Errorf("process jobs %d → %d, want the reprocessed photo's job added", len(jobsBefore), len(jobsAfter))
	}
	if _, err := s.ReprocessPhoto(ctx, lost.ID, processJob(lost.ID), time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReprocessPhoto of a processing photo: %v, want ErrNotFound", err)
	}

	const reason = "lost: the original is missing"
	ph, err = s.LosePhoto(ctx, lost.ID, reason, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if ph.Status != store.PhotoRejected || ph.Reason != reason {
		t.Errorf("LosePhoto = %+v, want rejected, %q", ph, reason)
	}
	if _, err := s.LosePhoto(ctx, "nope", reason, time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LosePhoto of no photo: %v, want ErrNotFound", err)
	}
	after, err := s.LastEventID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if evs, err := s.Events(ctx, store.EventsParams{UserID: u.ID, AfterID: before, Limit: 10}); err != nil || len(evs) != 2 || after != evs[1].ID {
		t.Errorf("events after: %v, %v; want one for each change", evs, err)
	}

	all, err := s.Photos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]store.PhotoStatus{}
	for _, p := range all {
		got[p.ID] = p.Status
	}
	if len(all) != 2 || got[ready.ID] != store.PhotoProcessing || got[lost.ID] != store.PhotoRejected {
		t.Errorf("Photos = %v", got)
	}
}
