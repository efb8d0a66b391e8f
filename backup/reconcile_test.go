package backup_test

import (
	"slices"
	"testing"
	"time"

	"onebox/backup"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/photos"
	"onebox/store"
)

// TestReconcile: after losing some files, the photos that reference
// them are made again from their originals or marked lost, and the
// files no row references are listed, and swept past the grace.
func TestReconcile(t *testing.T) {
	t.Parallel()
	const orphan = "photos/orphan/w128.webp" // seed's
	tests := []struct {
		name        string
		remove      func(in *instance) []string // keys to delete before reconciling
		sweep       bool
		grace       time.Duration
		reprocessed func(in *instance) []string
		lost        func(in *instance) []string
		swept       int
	}{
		{name: "intact"},
		{
			name:        "variant gone",
			remove:      func(in *instance) []string { return []string{in.ready.Variants[1].Key} },
			reprocessed: func(in *instance) []string { return []string{in.ready.ID} },
		},
		{
			name:   "originals gone",
			remove: func(in *instance) []string { return []string{in.ready.OriginalKey, in.inWork.OriginalKey} },
			lost:   func(in *instance) []string { return []string{in.ready.ID, in.inWork.ID} },
		},
		{name: "sweep", sweep: true, swept: 1},
		{name: "sweep within grace", sweep: true, grace: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			in := seed(t)
			if tt.remove != nil {
				if err := in.media.Delete(ctx, tt.remove(in)...); err != nil {
					t.Fatal(err)
				}
			}
			q := in.db.Queue(jobsqlite.Options{})
			before, err := q.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r, err := backup.Reconcile(ctx, in.db, in.media, backup.ReconcileOptions{
				Lists: []backup.Lister{in.media}, Sweep: tt.sweep, Grace: tt.grace,
			})
			if err != nil {
				t.Fatal(err)
			}
			var wantReprocessed, wantLost []string
			if tt.reprocessed != nil {
				wantReprocessed = tt.reprocessed(in)
			}
			if tt.lost != nil {
				wantLost = tt.lost(in)
				slices.Sort(wantLost)
			}
			slices.Sort(r.Lost)
			if r.Photos != 2 || !slices.Equal(r.Reprocessed, wantReprocessed) || !slices.Equal(r.Lost, wantLost) ||
				!slices.Equal(r.Orphans, []string{orphan}) || r.Swept != tt.swept {
				t.Fatalf("Reconcile = %+v, want reprocessed %q, lost %q, orphan %s, swept %d", r, wantReprocessed, wantLost, orphan, tt.swept)
			}
			for _, id := range wantReprocessed {
				ph, err := in.db.Photo(ctx, store.PhotoParams{ID: id, Freshness: store.MustBeFresh})
				if err != nil || ph.Status != store.PhotoProcessing || len(ph.Variants) != 0 {
					t.Errorf("reprocessed photo %s: %+v, %v; want processing without variants", id, ph, err)
				}
			}
			after, err := q.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := after.Kinds[photos.KindProcess].Queued, before.Kinds[photos.KindProcess].Queued+len(wantReprocessed); got != want {
				t.Errorf("%d process jobs queued, want %d", got, want)
			}
			for _, id := range wantLost {
				ph, err := in.db.Photo(ctx, store.PhotoParams{ID: id, Freshness: store.MustBeFresh})
				if err != nil || ph.Status != store.PhotoRejected || ph.Reason != backup.LostReason {
					t.Errorf("lost photo %s: %+v, %v; want rejected, %q", id, ph, err, backup.LostReason)
				}
			}
			keys, err := in.media.Keys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			left := map[string]bool{}
			for _, k := range keys {
				left[k.Key] = true
			}
			if left[orphan] == (tt.swept == 1) {
				t.Errorf("orphan left %v, want it swept %v", left[orphan], tt.swept == 1)
			}
			for key := range in.files {
				if !left[key] && (tt.remove == nil || !slices.Contains(tt.remove(in), key)) {
					t.Errorf("referenced %s was removed", key)
				}
			}
		})
	}
}
