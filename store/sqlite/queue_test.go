package sqlite_test

import (
	"testing"
	"time"

	"maragu.dev/goqite"

	"onebox/jobs"
	"onebox/store"
	"onebox/store/sqlite"
)

// TestGoqiteReadsStoreJobs: the jobs CreatePhoto, DeletePhoto and
// DeleteUser enqueue are goqite messages in the queue "jobs:<kind>",
// which goqite's own Receive reads, with onebox's envelope as the body.
func TestGoqiteReadsStoreJobs(t *testing.T) {
	t.Parallel()
	s := mustNew(t, sqlite.Options{})
	u := mustCreateUser(t, s)
	p := photoParams(t, u.ID)
	p.Job.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	ph := mustCreatePhoto(t, s, p)
	kept := mustCreatePhoto(t, s, photoParams(t, u.ID))
	if _, _, err := s.DeletePhoto(t.Context(), store.DeletePhotoParams{ID: ph.ID, OwnerID: u.ID, Cleanup: cleanupJob, Now: time.Now()}); err != nil {
		t.Fatalf("DeletePhoto: %v", err)
	}
	if err := s.DeleteUser(t.Context(), store.DeleteUserParams{ID: u.ID, Cleanup: cleanupJob}); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}

	tests := []struct {
		kind string
		want []jobs.Message
	}{
		{processKind, []jobs.Message{p.Job, processJob(kept.ID)}},
		{cleanupKind, []jobs.Message{cleanupJob([]string{ph.OriginalKey}), cleanupJob([]string{kept.OriginalKey})}},
	}
	for _, tt := range tests {
		g := goqite.New(goqite.NewOpts{DB: s.Writer(), Name: "jobs:" + tt.kind, SQLFlavor: goqite.SQLFlavorSQLite, Timeout: time.Minute})
		for i, want := range tt.want {
			gm, err := g.Receive(t.Context())
			if err != nil || gm == nil {
				t.Fatalf("goqite Receive(%s) #%d = %v, %v; want %+v", tt.kind, i, gm, err, want)
			}
			got, err := jobs.Decode(gm.Body)
			if err != nil {
				t.Fatalf("goqite body %q: %v", gm.Body, err)
			}
			if got.Kind != want.Kind || string(got.Payload) != string(want.Payload) ||
				got.RequestID != want.RequestID || got.TraceParent != want.TraceParent {
				t.Errorf("goqite received %+v, want %+v", got, want)
			}
		}
		if gm, err := g.Receive(t.Context()); err != nil || gm != nil {
			t.Errorf("goqite Receive(%s) after the last = %+v, %v; want nothing", tt.kind, gm, err)
		}
	}
}
