package sqlite_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/store"
	"onebox/store/sqlite"
)

// The job kinds these tests enqueue.
const (
	processKind = "test.process"
	cleanupKind = "test.cleanup"
)

func processJob(photoID string) jobs.Message {
	b, _ := json.Marshal(map[string]string{"photo_id": photoID})
	return jobs.Message{Kind: processKind, Payload: b, RequestID: "req-" + photoID}
}

// cleanupJob is a store.CleanupJob whose payload is the keys.
func cleanupJob(keys []string) jobs.Message {
	b, _ := json.Marshal(keys)
	return jobs.Message{Kind: cleanupKind, Payload: b}
}

func photoParams(tb testing.TB, ownerID string) store.CreatePhotoParams {
	tb.Helper()
	id := newID(tb)
	return store.CreatePhotoParams{
		Photo: store.Photo{
			ID: id, OwnerID: ownerID, OriginalKey: "originals/" + id,
			ContentType: "image/jpeg", Size: 1, CreatedAt: time.Now(),
		},
		Job: processJob(id),
	}
}

// keyedParams is photoParams with an idempotency key and digest that
// lives for a day.
func keyedParams(tb testing.TB, ownerID, key, digest string) store.CreatePhotoParams {
	tb.Helper()
	p := photoParams(tb, ownerID)
	p.Idempotency = store.Idempotency{Key: key, Digest: digest, ExpiresAt: p.Photo.CreatedAt.Add(24 * time.Hour)}
	return p
}

func mustCreatePhoto(tb testing.TB, s *sqlite.Store, p store.CreatePhotoParams) store.Photo {
	tb.Helper()
	ph, created, err := s.CreatePhoto(tb.Context(), p)
	if err != nil || !created {
		tb.Fatalf("CreatePhoto: created %v, error %v", created, err)
	}
	return ph
}

// mustReceive takes every visible job of kind from q.
func mustReceive(t *testing.T, q *jobsqlite.Queue, kind string) []jobs.Message {
	t.Helper()
	msgs, err := q.Receive(t.Context(), kind, 100, time.Minute)
	if err != nil {
		t.Fatalf("Receive(%s): %v", kind, err)
	}
	return msgs
}

// wantJobs fails unless q holds exactly want of kind, compared by kind,
// payload and request ID, and takes them.
func wantJobs(t *testing.T, q *jobsqlite.Queue, kind string, want ...jobs.Message) {
	t.Helper()
	got := mustReceive(t, q, kind)
	if len(got) != len(want) {
		t.Fatalf("%d jobs of kind %s in the queue (%+v), want %d", len(got), kind, got, len(want))
	}
	for i, m := range got {
		w := want[i]
		if m.Kind != w.Kind || string(m.Payload) != string(w.Payload) || m.RequestID != w.RequestID {
			t.Errorf("job %d = %+v, want %+v", i, m, w)
		}
	}
}

// TestCreatePhotoJobs: the photo's job is in the queue once the photo
// is. A retried upload enqueues nothing more, and a failed one nothing
// at all: CreatePhoto sends the job first, so the failing statements
// come after it and prove the job rolls back with the photo.
func TestCreatePhotoJobs(t *testing.T) {
	t.Parallel()
	s := mustNew(t, sqlite.Options{})
	q := s.Queue(jobsqlite.Options{})
	u := mustCreateUser(t, s)
	first := keyedParams(t, u.ID, "upload-1", "sha256:aa")
	mustCreatePhoto(t, s, first)

	retry := keyedParams(t, u.ID, "upload-1", "sha256:aa")
	if _, created, err := s.CreatePhoto(t.Context(), retry); err != nil || created {
		t.Fatalf("retried CreatePhoto: created %v, error %v", created, err)
	}
	takenID := photoParams(t, u.ID)
	takenID.Photo.ID = first.Photo.ID
	failing := []struct {
		name string
		p    store.CreatePhotoParams
		want error
	}{
		{"a taken ID", takenID, store.ErrConflict},
		{"a missing owner", photoParams(t, newID(t)), store.ErrNotFound},
		{"the key and another digest", keyedParams(t, u.ID, "upload-1", "sha256:bb"), store.ErrIdempotencyMismatch},
	}
	for _, tt := range failing {
		if _, _, err := s.CreatePhoto(t.Context(), tt.p); !errors.Is(err, tt.want) {
			t.Fatalf("CreatePhoto with %s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	wantJobs(t, q, processKind, first.Job)
}

// TestCreatePhotoBadJob: a job the queue cannot encode fails the upload
// and leaves no photo behind.
func TestCreatePhotoBadJob(t *testing.T) {
	t.Parallel()
	s := mustNew(t, sqlite.Options{})
	u := mustCreateUser(t, s)
	p := photoParams(t, u.ID)
	p.Job = jobs.Message{}
	if _, _, err := s.CreatePhoto(t.Context(), p); !errors.Is(err, jobs.ErrMalformed) {
		t.Fatalf("CreatePhoto with an empty job: got %v, want jobs.ErrMalformed", err)
	}
	if _, err := s.Photo(t.Context(), store.PhotoParams{ID: p.Photo.ID}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Photo after a failed create: got %v, want store.ErrNotFound", err)
	}
}

// TestCleanupJobs: DeletePhoto and DeleteUser enqueue the cleanup job
// with exactly the keys of what they deleted; refused deletes and users
// without photos enqueue nothing.
func TestCleanupJobs(t *testing.T) {
	t.Parallel()
	s := mustNew(t, sqlite.Options{})
	q := s.Queue(jobsqlite.Options{})
	u := mustCreateUser(t, s)
	other := mustCreateUser(t, s)
	ph := mustCreatePhoto(t, s, photoParams(t, u.ID))
	variants := []store.Variant{{Name: "thumb", Key: "v/" + ph.ID + "/thumb"}, {Name: "w1024", Key: "v/" + ph.ID + "/w1024"}}
	_, err := s.FinishPhoto(t.Context(), store.FinishPhotoParams{ID: ph.ID, Status: store.PhotoReady, Variants: variants, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	kept := mustCreatePhoto(t, s, photoParams(t, u.ID))

	del := store.DeletePhotoParams{ID: ph.ID, OwnerID: other.ID, Cleanup: cleanupJob, Now: time.Now()}
	if _, _, err := s.DeletePhoto(t.Context(), del); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeletePhoto by another user: got %v, want store.ErrNotFound", err)
	}
	wantJobs(t, q, cleanupKind)

	del.OwnerID = u.ID
	if _, _, err := s.DeletePhoto(t.Context(), del); err != nil {
		t.Fatalf("DeletePhoto: %v", err)
	}
	wantJobs(t, q, cleanupKind, cleanupJob([]string{ph.OriginalKey, variants[0].Key, variants[1].Key}))

	for _, id := range []string{other.ID, u.ID} {
		if err := s.DeleteUser(t.Context(), store.DeleteUserParams{ID: id, Cleanup: cleanupJob}); err != nil {
			t.Fatalf("DeleteUser: %v", err)
		}
	}
	wantJobs(t, q, cleanupKind, cleanupJob([]string{kept.OriginalKey}))
}
