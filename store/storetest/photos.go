package storetest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"onebox/jobs"
	"onebox/store"
)

func photoCases() []testCase {
	return []testCase{
		{"CreateAndRead", testPhotoCreateAndRead},
		{"CreateMissingOwner", testPhotoCreateMissingOwner},
		{"CreateTakenID", testPhotoCreateTakenID},
		{"NotFound", testPhotoNotFound},
		{"ListPaging", testPhotoListPaging},
		{"FinishIdempotent", testPhotoFinishIdempotent},
		{"FinishRejected", testPhotoFinishRejected},
		{"FinishInvalidStatus", testPhotoFinishInvalidStatus},
		{"Delete", testPhotoDelete},
		{"DeleteNotOwner", testPhotoDeleteNotOwner},
		{"DeleteAvatar", testPhotoDeleteAvatar},
		{"AvatarRules", testAvatarRules},
		{"DeleteUserWithPhotos", testDeleteUserWithPhotos},
	}
}

// photoParams returns what an upload of ownerID at baseTime+offset
// passes to CreatePhoto.
func photoParams(t *testing.T, ownerID string, offset time.Duration) store.CreatePhotoParams {
	t.Helper()
	p, err := newPhotoParams(ownerID, offset)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newPhotoParams is photoParams for callers without a test.
func newPhotoParams(ownerID string, offset time.Duration) (store.CreatePhotoParams, error) {
	uid, err := uuid.NewV7()
	if err != nil {
		return store.CreatePhotoParams{}, err
	}
	id := uid.String()
	payload, err := json.Marshal(map[string]string{"photo_id": id})
	if err != nil {
		return store.CreatePhotoParams{}, err
	}
	return store.CreatePhotoParams{
		Photo: store.Photo{
			ID:          id,
			OwnerID:     ownerID,
			Status:      store.PhotoProcessing,
			OriginalKey: "originals/" + id,
			ContentType: "image/jpeg",
			Size:        12345,
			CreatedAt:   baseTime().Add(offset),
			UpdatedAt:   baseTime().Add(offset),
		},
		Job: jobs.Message{Kind: processKind, Payload: payload, RequestID: "req-" + id},
	}, nil
}

// mustCreatePhoto uploads a processing photo of ownerID at baseTime+offset.
func mustCreatePhoto(t *testing.T, s store.Store, ownerID string, offset time.Duration) store.Photo {
	t.Helper()
	ph, created, err := s.CreatePhoto(t.Context(), photoParams(t, ownerID, offset))
	if err != nil || !created {
		t.Fatalf("CreatePhoto: created %v, error %v", created, err)
	}
	return ph
}

// testVariants are what a pipeline publishes for photo id.
func testVariants(id string) []store.Variant {
	return []store.Variant{
		{Name: "thumb", Key: "variants/" + id + "/thumb.webp", Width: 128, Height: 96, Size: 2048, ContentType: "image/webp"},
		{Name: "w1024", Key: "variants/" + id + "/w1024.jpeg", Width: 1024, Height: 768, Size: 98765, ContentType: "image/jpeg"},
	}
}

// readyParams finishes photo id as ready with testVariants at baseTime+offset.
func readyParams(id string, offset time.Duration) store.FinishPhotoParams {
	return store.FinishPhotoParams{
		ID: id, Status: store.PhotoReady, Width: 4032, Height: 3024,
		Variants: testVariants(id), Now: baseTime().Add(offset),
	}
}

// mustFinishReady finishes photo id as ready at baseTime+offset.
func mustFinishReady(t *testing.T, s store.Store, id string, offset time.Duration) store.Photo {
	t.Helper()
	ph, err := s.FinishPhoto(t.Context(), readyParams(id, offset))
	wantErr(t, "FinishPhoto", err, nil)
	return ph
}

// readyPhoto is ph as readyParams(ph.ID, offset) finishes it.
func readyPhoto(ph store.Photo, offset time.Duration) store.Photo {
	ph.Status, ph.Width, ph.Height = store.PhotoReady, 4032, 3024
	ph.Variants = testVariants(ph.ID)
	ph.UpdatedAt = baseTime().Add(offset)
	return ph
}

// checkPhoto fails unless got equals want; no variants and an empty
// list are the same.
func checkPhoto(t *testing.T, what string, got, want store.Photo) {
	t.Helper()
	checkTimes(t, what, &got, &want, func(p *store.Photo) []*time.Time { return []*time.Time{&p.CreatedAt, &p.UpdatedAt} })
	if !slices.Equal(got.Variants, want.Variants) {
		t.Errorf("%s: variants\n got %+v\nwant %+v", what, got.Variants, want.Variants)
	}
	got.Variants, want.Variants = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// mustReadPhoto reads photo id with every freshness, which must agree.
func mustReadPhoto(t *testing.T, s store.Store, id string) store.Photo {
	t.Helper()
	var first store.Photo
	for i, f := range []store.Freshness{store.MustBeFresh, store.MayBeStale} {
		got, err := s.Photo(t.Context(), store.PhotoParams{ID: id, Freshness: f})
		wantErr(t, fmt.Sprintf("Photo(freshness %d)", f), err, nil)
		if i == 0 {
			first = got
			continue
		}
		checkPhoto(t, fmt.Sprintf("Photo(freshness %d)", f), got, first)
	}
	return first
}

func wantNoPhoto(t *testing.T, s store.Store, what, id string) {
	t.Helper()
	_, err := s.Photo(t.Context(), store.PhotoParams{ID: id, Freshness: store.MustBeFresh})
	wantErr(t, what, err, store.ErrNotFound)
}

// keysOf lists the media keys of photos made by readyParams.
func keysOf(ph store.Photo) []string {
	keys := []string{ph.OriginalKey}
	for _, v := range ph.Variants {
		keys = append(keys, v.Key)
	}
	return keys
}

func testPhotoCreateAndRead(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	p := photoParams(t, u.ID, time.Minute)
	// A caller's stray fields are ignored: a new photo is processing.
	p.Photo.Status, p.Photo.Width, p.Photo.Reason = store.PhotoReady, 99, "stray"
	p.Photo.Variants = testVariants(p.Photo.ID)
	want := store.Photo{
		ID:          p.Photo.ID,
		OwnerID:     u.ID,
		Status:      store.PhotoProcessing,
		OriginalKey: p.Photo.OriginalKey,
		ContentType: "image/jpeg",
		Size:        12345,
		CreatedAt:   p.Photo.CreatedAt,
		UpdatedAt:   p.Photo.CreatedAt,
	}
	wantJobs(t, s, "before CreatePhoto", processKind)
	got, created, err := s.CreatePhoto(t.Context(), p)
	wantErr(t, "CreatePhoto", err, nil)
	if !created {
		t.Error("CreatePhoto: created false for a new photo")
	}
	checkPhoto(t, "CreatePhoto", got, want)
	checkPhoto(t, "Photo", mustReadPhoto(t, s, want.ID), want)
	// The job committed with the photo, as the caller made it: its
	// payload names the photo.
	wantJobs(t, s, "after CreatePhoto", processKind, p.Job)

	// Variants round-trip, in order, with every field.
	want = readyPhoto(want, 2*time.Minute)
	checkPhoto(t, "FinishPhoto", mustFinishReady(t, s, want.ID, 2*time.Minute), want)
	checkPhoto(t, "Photo after FinishPhoto", mustReadPhoto(t, s, want.ID), want)
}

func testPhotoCreateMissingOwner(t *testing.T, s store.Store) {
	for _, key := range []string{"", "upload-1"} {
		p := keyedParams(t, newID(t), 0, key, digestA)
		if key == "" {
			p.Idempotency = store.Idempotency{}
		}
		_, _, err := s.CreatePhoto(t.Context(), p)
		wantErr(t, fmt.Sprintf("CreatePhoto(key %q) for a missing owner", key), err, store.ErrNotFound)
		wantNoPhoto(t, s, "Photo", p.Photo.ID)
	}
	wantJobs(t, s, "CreatePhoto for a missing owner", processKind)
}

func testPhotoCreateTakenID(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	first := photoParams(t, u.ID, 0)
	ph, _, err := s.CreatePhoto(t.Context(), first)
	wantErr(t, "CreatePhoto", err, nil)
	lastEvent := mustLastEventID(t, s, u.ID)
	p := photoParams(t, u.ID, time.Minute)
	p.Photo.ID = ph.ID
	_, _, err = s.CreatePhoto(t.Context(), p)
	wantErr(t, "CreatePhoto with a taken ID", err, store.ErrConflict)
	checkPhoto(t, "the first photo", mustReadPhoto(t, s, ph.ID), ph)
	if id := mustLastEventID(t, s, u.ID); id != lastEvent {
		t.Errorf("LastEventID = %d, want %d: a failed create writes no event", id, lastEvent)
	}
	// The failed create's job rolled back with it.
	wantJobs(t, s, "CreatePhoto with a taken ID", processKind, first.Job)
}

func testPhotoNotFound(t *testing.T, s store.Store) {
	wantNoPhoto(t, s, "Photo(unknown)", newID(t))
	_, err := s.Photo(t.Context(), store.PhotoParams{ID: newID(t)})
	wantErr(t, "Photo(unknown, MayBeStale)", err, store.ErrNotFound)
}

func testPhotoListPaging(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	other := mustCreateUser(t, s, "Bob")
	mustCreatePhoto(t, s, other.ID, 0)

	// Create in random order: the list must come back newest (highest ID)
	// first anyway. Every third is ready, the next one rejected.
	ids := make([]string, 25)
	for i := range ids {
		ids[i] = newID(t)
	}
	var ready []string
	for _, i := range rand.Perm(len(ids)) {
		p := photoParams(t, u.ID, 0)
		p.Photo.ID = ids[i]
		_, _, err := s.CreatePhoto(t.Context(), p)
		wantErr(t, "CreatePhoto", err, nil)
		switch i % 3 {
		case 0:
			mustFinishReady(t, s, ids[i], time.Minute)
			ready = append(ready, ids[i])
		case 1:
			_, err := s.FinishPhoto(t.Context(), store.FinishPhotoParams{ID: ids[i], Status: store.PhotoRejected, Reason: "no", Now: baseTime()})
			wantErr(t, "FinishPhoto(rejected)", err, nil)
		}
	}
	newestFirst := func(ids []string) []string {
		return slices.SortedFunc(slices.Values(ids), func(a, b string) int { return cmp.Compare(b, a) })
	}

	tests := []struct {
		name      string
		readyOnly bool
		limit     int
		want      []string
		sizes     []int
	}{
		{"all", false, 10, newestFirst(ids), []int{10, 10, 5, 0}},
		{"ready only", true, 4, newestFirst(ready), []int{4, 4, 1, 0}},
	}
	for _, tt := range tests {
		var got []string
		var sizes []int
		before := ""
		for range 6 { // bounded: a store that never ends must not hang the test
			page, err := s.ListPhotos(t.Context(), store.ListPhotosParams{
				OwnerID: u.ID, BeforeID: before, Limit: tt.limit, ReadyOnly: tt.readyOnly,
			})
			wantErr(t, tt.name+": ListPhotos", err, nil)
			sizes = append(sizes, len(page))
			if len(page) == 0 {
				break
			}
			for _, ph := range page {
				got = append(got, ph.ID)
				if ph.OwnerID != u.ID || (tt.readyOnly && ph.Status != store.PhotoReady) {
					t.Errorf("%s: listed %+v", tt.name, ph)
				}
			}
			before = page[len(page)-1].ID
		}
		if !slices.Equal(sizes, tt.sizes) {
			t.Errorf("%s: page sizes %v, want %v", tt.name, sizes, tt.sizes)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: listed IDs (duplicated, missing or out of order):\n got %v\nwant %v", tt.name, got, tt.want)
		}
	}

	// A listed photo is the whole row.
	page, err := s.ListPhotos(t.Context(), store.ListPhotosParams{OwnerID: u.ID, Limit: 1, ReadyOnly: true})
	wantErr(t, "ListPhotos", err, nil)
	if len(page) != 1 {
		t.Fatalf("ListPhotos(limit 1) returned %d photos", len(page))
	}
	checkPhoto(t, "listed photo", page[0], mustReadPhoto(t, s, page[0].ID))

	page, err = s.ListPhotos(t.Context(), store.ListPhotosParams{OwnerID: newID(t), Limit: 10})
	wantErr(t, "ListPhotos(unknown owner)", err, nil)
	if len(page) != 0 {
		t.Errorf("ListPhotos(unknown owner) = %v, want none", page)
	}
}

func testPhotoFinishIdempotent(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	ph := mustCreatePhoto(t, s, u.ID, 0)
	want := readyPhoto(ph, time.Minute)
	checkPhoto(t, "FinishPhoto", mustFinishReady(t, s, ph.ID, time.Minute), want)
	lastEvent := mustLastEventID(t, s, u.ID)

	// A retried job, even one with another outcome, changes nothing.
	again := []store.FinishPhotoParams{
		readyParams(ph.ID, 2*time.Minute),
		{ID: ph.ID, Status: store.PhotoRejected, Reason: "late", Now: baseTime().Add(3 * time.Minute)},
	}
	for _, p := range again {
		got, err := s.FinishPhoto(t.Context(), p)
		wantErr(t, "FinishPhoto again", err, nil)
		checkPhoto(t, "FinishPhoto again", got, want)
	}
	checkPhoto(t, "Photo", mustReadPhoto(t, s, ph.ID), want)
	evs := mustEvents(t, s, store.EventsParams{UserID: u.ID, Limit: 10})
	if len(evs) != 2 || evs[1].ID != lastEvent {
		t.Errorf("events %+v: want the create's and one finish's, the last %d", evs, lastEvent)
	}

	_, _, err := s.DeletePhoto(t.Context(), store.DeletePhotoParams{ID: ph.ID, OwnerID: u.ID, Now: baseTime()})
	wantErr(t, "DeletePhoto", err, nil)
	_, err = s.FinishPhoto(t.Context(), readyParams(ph.ID, 4*time.Minute))
	wantErr(t, "FinishPhoto after DeletePhoto", err, store.ErrNotFound)
	_, err = s.FinishPhoto(t.Context(), readyParams(newID(t), 4*time.Minute))
	wantErr(t, "FinishPhoto(unknown)", err, store.ErrNotFound)
}

func testPhotoFinishRejected(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	ph := mustCreatePhoto(t, s, u.ID, 0)
	now := baseTime().Add(time.Minute)
	got, err := s.FinishPhoto(t.Context(), store.FinishPhotoParams{
		ID: ph.ID, Status: store.PhotoRejected, Reason: "not a photo", Now: now,
	})
	wantErr(t, "FinishPhoto(rejected)", err, nil)
	want := ph
	want.Status, want.Reason, want.UpdatedAt = store.PhotoRejected, "not a photo", now
	checkPhoto(t, "FinishPhoto(rejected)", got, want)
	checkPhoto(t, "Photo", mustReadPhoto(t, s, ph.ID), want)
}

func testPhotoFinishInvalidStatus(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	ph := mustCreatePhoto(t, s, u.ID, 0)
	for _, status := range []store.PhotoStatus{store.PhotoProcessing, "", "deleted"} {
		p := readyParams(ph.ID, time.Minute)
		p.Status = status
		_, err := s.FinishPhoto(t.Context(), p)
		wantErr(t, fmt.Sprintf("FinishPhoto(status %q)", status), err, store.ErrInvalid)
	}
	checkPhoto(t, "Photo", mustReadPhoto(t, s, ph.ID), ph)
}

func testPhotoDelete(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	ready := mustCreatePhoto(t, s, u.ID, 0)
	ready = mustFinishReady(t, s, ready.ID, time.Minute)
	processing := mustCreatePhoto(t, s, u.ID, 0)

	var cleanups [][]string
	for _, ph := range []store.Photo{ready, processing} {
		now := baseTime().Add(time.Hour)
		got, avatarCleared, err := s.DeletePhoto(t.Context(), store.DeletePhotoParams{
			ID: ph.ID, OwnerID: u.ID, Cleanup: cleanupJob, Now: now,
		})
		wantErr(t, "DeletePhoto", err, nil)
		checkPhoto(t, "DeletePhoto", got, ph)
		if avatarCleared {
			t.Error("DeletePhoto of a photo that is no avatar: avatarCleared true")
		}
		cleanups = append(cleanups, keysOf(ph))
		wantCleanups(t, s, "DeletePhoto", cleanups...)
		wantNoPhoto(t, s, "Photo after DeletePhoto", ph.ID)

		// The delete event outlives the photo.
		evs := mustEvents(t, s, store.EventsParams{UserID: u.ID, PhotoID: ph.ID, Limit: 10})
		if n := len(evs); n < 2 || evs[n-1].ID != mustLastEventID(t, s, u.ID) || !sameTime(evs[n-1].CreatedAt, now) {
			t.Errorf("events of the deleted photo %+v: want its delete event last, at %v", evs, now)
		}

		_, _, err = s.DeletePhoto(t.Context(), store.DeletePhotoParams{ID: ph.ID, OwnerID: u.ID, Cleanup: cleanupJob, Now: now})
		wantErr(t, "DeletePhoto again", err, store.ErrNotFound)
		wantCleanups(t, s, "DeletePhoto again", cleanups...)
	}

	// Without a cleanup job, the rows go all the same.
	ph := mustCreatePhoto(t, s, u.ID, 0)
	_, _, err := s.DeletePhoto(t.Context(), store.DeletePhotoParams{ID: ph.ID, OwnerID: u.ID, Now: baseTime()})
	wantErr(t, "DeletePhoto without Cleanup", err, nil)
	wantNoPhoto(t, s, "Photo", ph.ID)
	wantCleanups(t, s, "DeletePhoto without Cleanup", cleanups...)
}

func testPhotoDeleteNotOwner(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	other := mustCreateUser(t, s, "Bob")
	ph := mustCreatePhoto(t, s, u.ID, 0)
	lastEvent := mustLastEventID(t, s, u.ID)
	for _, owner := range []string{other.ID, newID(t)} {
		_, _, err := s.DeletePhoto(t.Context(), store.DeletePhotoParams{ID: ph.ID, OwnerID: owner, Cleanup: cleanupJob, Now: baseTime()})
		wantErr(t, "DeletePhoto by another user", err, store.ErrNotFound)
	}
	_, _, err := s.DeletePhoto(t.Context(), store.DeletePhotoParams{ID: newID(t), OwnerID: u.ID, Cleanup: cleanupJob, Now: baseTime()})
	wantErr(t, "DeletePhoto(unknown)", err, store.ErrNotFound)
	wantCleanups(t, s, "refused DeletePhoto")
	checkPhoto(t, "Photo", mustReadPhoto(t, s, ph.ID), ph)
	if id := mustLastEventID(t, s, u.ID); id != lastEvent {
		t.Errorf("LastEventID = %d, want %d: a refused delete writes no event", id, lastEvent)
	}
}

// mustSetAvatar makes photo id the avatar of user u at baseTime+offset.
func mustSetAvatar(t *testing.T, s store.Store, u store.User, id string, offset time.Duration) store.User {
	t.Helper()
	got, err := s.UpdateUser(t.Context(), store.UpdateUserParams{ID: u.ID, AvatarID: &id, Now: baseTime().Add(offset)})
	wantErr(t, "UpdateUser(avatar)", err, nil)
	want := u
	want.AvatarID, want.UpdatedAt, want.Version = id, baseTime().Add(offset), u.Version+1
	checkUser(t, "UpdateUser(avatar)", got, want)
	return got
}

func testPhotoDeleteAvatar(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	avatar := mustCreatePhoto(t, s, u.ID, 0)
	mustFinishReady(t, s, avatar.ID, time.Minute)
	notAvatar := mustCreatePhoto(t, s, u.ID, 0)
	u = mustSetAvatar(t, s, u, avatar.ID, 2*time.Minute)

	_, avatarCleared, err := s.DeletePhoto(t.Context(), store.DeletePhotoParams{ID: notAvatar.ID, OwnerID: u.ID, Now: baseTime().Add(time.Hour)})
	wantErr(t, "DeletePhoto(another photo)", err, nil)
	if avatarCleared {
		t.Error("DeletePhoto(another photo): avatarCleared true")
	}
	read, err := s.User(t.Context(), store.UserParams{ID: u.ID, Freshness: store.MustBeFresh})
	wantErr(t, "User", err, nil)
	checkUser(t, "profile after deleting another photo", read, u)

	now := baseTime().Add(2 * time.Hour)
	_, avatarCleared, err = s.DeletePhoto(t.Context(), store.DeletePhotoParams{ID: avatar.ID, OwnerID: u.ID, Now: now})
	wantErr(t, "DeletePhoto(avatar)", err, nil)
	if !avatarCleared {
		t.Error("DeletePhoto(avatar): avatarCleared false")
	}
	want := u
	want.AvatarID, want.UpdatedAt, want.Version = "", now, u.Version+1
	read, err = s.User(t.Context(), store.UserParams{ID: u.ID, Freshness: store.MustBeFresh})
	wantErr(t, "User", err, nil)
	checkUser(t, "profile after deleting the avatar", read, want)
}

func testAvatarRules(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	other := mustCreateUser(t, s, "Bob")
	processing := mustCreatePhoto(t, s, u.ID, 0)
	rejected := mustCreatePhoto(t, s, u.ID, 0)
	_, err := s.FinishPhoto(t.Context(), store.FinishPhotoParams{ID: rejected.ID, Status: store.PhotoRejected, Reason: "no", Now: baseTime()})
	wantErr(t, "FinishPhoto(rejected)", err, nil)
	ready := mustCreatePhoto(t, s, u.ID, 0)
	mustFinishReady(t, s, ready.ID, time.Minute)
	theirs := mustCreatePhoto(t, s, other.ID, 0)
	mustFinishReady(t, s, theirs.ID, time.Minute)
	deleted := mustCreatePhoto(t, s, u.ID, 0)
	mustFinishReady(t, s, deleted.ID, time.Minute)
	_, _, err = s.DeletePhoto(t.Context(), store.DeletePhotoParams{ID: deleted.ID, OwnerID: u.ID, Now: baseTime()})
	wantErr(t, "DeletePhoto", err, nil)

	refused := []struct {
		name string
		id   string
	}{
		{"processing photo", processing.ID},
		{"rejected photo", rejected.ID},
		{"another user's ready photo", theirs.ID},
		{"deleted photo", deleted.ID},
		{"unknown photo", newID(t)},
	}
	for _, tt := range refused {
		_, err := s.UpdateUser(t.Context(), store.UpdateUserParams{ID: u.ID, AvatarID: &tt.id, Now: baseTime()})
		wantErr(t, "avatar: "+tt.name, err, store.ErrInvalid)
	}
	read, err := s.User(t.Context(), store.UserParams{ID: u.ID, Freshness: store.MustBeFresh})
	wantErr(t, "User", err, nil)
	checkUser(t, "profile after refused avatars", read, u)

	u = mustSetAvatar(t, s, u, ready.ID, time.Hour)
	// Other fields leave the avatar alone.
	bio := "hello"
	got, err := s.UpdateUser(t.Context(), store.UpdateUserParams{ID: u.ID, Bio: &bio, Now: baseTime().Add(time.Hour)})
	wantErr(t, "UpdateUser(bio)", err, nil)
	if got.AvatarID != ready.ID {
		t.Errorf("avatar after a bio change = %q, want %q", got.AvatarID, ready.ID)
	}
	u = got

	// The version check comes with the avatar check.
	_, err = s.UpdateUser(t.Context(), store.UpdateUserParams{ID: u.ID, IfVersion: u.Version - 1, AvatarID: &ready.ID, Now: baseTime()})
	wantErr(t, "avatar at a stale version", err, store.ErrVersionMismatch)
	_, err = s.UpdateUser(t.Context(), store.UpdateUserParams{ID: newID(t), AvatarID: &ready.ID, Now: baseTime()})
	wantErr(t, "avatar of an unknown user", err, store.ErrNotFound)

	none := ""
	got, err = s.UpdateUser(t.Context(), store.UpdateUserParams{ID: u.ID, IfVersion: u.Version, AvatarID: &none, Now: baseTime().Add(2 * time.Hour)})
	wantErr(t, "UpdateUser(clear avatar)", err, nil)
	want := u
	want.AvatarID, want.UpdatedAt, want.Version = "", baseTime().Add(2*time.Hour), u.Version+1
	checkUser(t, "UpdateUser(clear avatar)", got, want)
}

func testDeleteUserWithPhotos(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	other := mustCreateUser(t, s, "Bob")
	ready := mustFinishReady(t, s, mustCreatePhoto(t, s, u.ID, 0).ID, time.Minute)
	processing := mustCreatePhoto(t, s, u.ID, 0)
	keyed := keyedParams(t, u.ID, 0, "upload-1", digestA)
	_, _, err := s.CreatePhoto(t.Context(), keyed)
	wantErr(t, "CreatePhoto", err, nil)
	mustSetAvatar(t, s, u, ready.ID, time.Hour)
	theirs := mustCreatePhoto(t, s, other.ID, 0)
	theirEvents := mustEvents(t, s, store.EventsParams{UserID: other.ID, Limit: 10})

	wantErr(t, "DeleteUser", s.DeleteUser(t.Context(), store.DeleteUserParams{ID: u.ID, Cleanup: cleanupJob}), nil)
	mine := slices.Concat(keysOf(ready), keysOf(processing), []string{keyed.Photo.OriginalKey})
	wantCleanups(t, s, "DeleteUser", mine)

	for _, id := range []string{ready.ID, processing.ID, keyed.Photo.ID} {
		wantNoPhoto(t, s, "photo of the deleted user", id)
	}
	page, err := s.ListPhotos(t.Context(), store.ListPhotosParams{OwnerID: u.ID, Limit: 10})
	wantErr(t, "ListPhotos", err, nil)
	if len(page) != 0 {
		t.Errorf("photos of the deleted user: %+v", page)
	}
	if evs := mustEvents(t, s, store.EventsParams{UserID: u.ID, Limit: 10}); len(evs) != 0 {
		t.Errorf("events of the deleted user: %+v", evs)
	}
	if id := mustLastEventID(t, s, u.ID); id != 0 {
		t.Errorf("LastEventID of the deleted user = %d, want 0", id)
	}

	checkPhoto(t, "another user's photo", mustReadPhoto(t, s, theirs.ID), theirs)
	if evs := mustEvents(t, s, store.EventsParams{UserID: other.ID, Limit: 10}); !slices.Equal(evs, theirEvents) {
		t.Errorf("another user's events = %+v, want %+v", evs, theirEvents)
	}

	// A refused delete enqueues nothing, even for a user who had photos.
	for _, id := range []string{u.ID, newID(t)} {
		wantErr(t, "DeleteUser of a missing user", s.DeleteUser(t.Context(), store.DeleteUserParams{ID: id, Cleanup: cleanupJob}), store.ErrNotFound)
	}
	wantCleanups(t, s, "refused DeleteUser", mine)

	wantErr(t, "DeleteUser(one photo)", s.DeleteUser(t.Context(), store.DeleteUserParams{ID: other.ID, Cleanup: cleanupJob}), nil)
	wantCleanups(t, s, "DeleteUser(one photo)", mine, keysOf(theirs))
	// A user without photos has nothing to clean up.
	lonely := mustCreateUser(t, s, "Carol")
	wantErr(t, "DeleteUser(no photos)", s.DeleteUser(t.Context(), store.DeleteUserParams{ID: lonely.ID, Cleanup: cleanupJob}), nil)
	wantCleanups(t, s, "DeleteUser(no photos)", mine, keysOf(theirs))
}
