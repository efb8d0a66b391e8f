package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"onebox/store"
)

func idempotencyCases() []testCase {
	return []testCase{
		{"Retry", testIdempotentRetry},
		{"Mismatch", testIdempotencyMismatch},
		{"PerOwner", testIdempotencyPerOwner},
		{"GoesWithPhoto", testIdempotencyGoesWithPhoto},
		{"Expiry", testIdempotencyExpiry},
		{"Prune", testIdempotencyPrune},
		{"Invalid", testIdempotencyInvalid},
		{"Race", testIdempotencyRace},
	}
}

// Digests of two different requests, as the app makes them.
const (
	digestA = "sha256:aaaa"
	digestB = "sha256:bbbb"
)

// keyTTL is how long the suite's keys live, from baseTime.
const keyTTL = 24 * time.Hour

// keyedParams is photoParams with an idempotency key and digest that
// expires keyTTL after baseTime.
func keyedParams(t *testing.T, ownerID string, offset time.Duration, key, digest string) store.CreatePhotoParams {
	t.Helper()
	p := photoParams(t, ownerID, offset)
	p.Idempotency = store.Idempotency{Key: key, Digest: digest, ExpiresAt: baseTime().Add(keyTTL)}
	return p
}

// byKey looks key of ownerID up with digest at baseTime+at.
func byKey(t *testing.T, s store.Store, ownerID, key, digest string, at time.Duration) (store.Photo, error) {
	t.Helper()
	return s.PhotoByIdempotencyKey(t.Context(), store.IdempotencyParams{OwnerID: ownerID, Key: key, Digest: digest, Now: baseTime().Add(at)})
}

// mustCreateKeyed creates a photo with p, which must be new.
func mustCreateKeyed(t *testing.T, s store.Store, p store.CreatePhotoParams) store.Photo {
	t.Helper()
	ph, created, err := s.CreatePhoto(t.Context(), p)
	wantErr(t, fmt.Sprintf("CreatePhoto(key %q)", p.Idempotency.Key), err, nil)
	if !created {
		t.Fatalf("CreatePhoto(key %q): created false, want a new photo", p.Idempotency.Key)
	}
	return ph
}

// testIdempotentRetry: the same key with the same digest writes nothing
// and returns the first photo, from CreatePhoto and from the lookup.
func testIdempotentRetry(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	first := keyedParams(t, u.ID, 0, "upload-1", digestA)
	want := mustCreateKeyed(t, s, first)
	lastEvent := mustLastEventID(t, s, u.ID)

	retry := keyedParams(t, u.ID, time.Minute, "upload-1", digestA)
	got, created, err := s.CreatePhoto(t.Context(), retry)
	wantErr(t, "retried CreatePhoto", err, nil)
	if created {
		t.Error("retried CreatePhoto: created true")
	}
	checkPhoto(t, "retried CreatePhoto", got, want)
	wantNoPhoto(t, s, "the retry's own ID", retry.Photo.ID)
	if id := mustLastEventID(t, s, u.ID); id != lastEvent {
		t.Errorf("LastEventID after the retry = %d, want %d: no second event", id, lastEvent)
	}
	wantJobs(t, s, "retried CreatePhoto", processKind, first.Job)
	// The lookup answers the same, with the digest and without one.
	for _, d := range []string{digestA, ""} {
		got, err := byKey(t, s, u.ID, "upload-1", d, time.Minute)
		wantErr(t, fmt.Sprintf("PhotoByIdempotencyKey(digest %q)", d), err, nil)
		checkPhoto(t, fmt.Sprintf("PhotoByIdempotencyKey(digest %q)", d), got, want)
	}
	_, err = byKey(t, s, u.ID, "upload-2", digestA, time.Minute)
	wantErr(t, "PhotoByIdempotencyKey(an unused key)", err, store.ErrNotFound)
}

// testIdempotencyMismatch: the same key with another digest is
// ErrIdempotencyMismatch and writes nothing; the key keeps its photo.
func testIdempotencyMismatch(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	first := keyedParams(t, u.ID, 0, "upload-1", digestA)
	want := mustCreateKeyed(t, s, first)
	lastEvent := mustLastEventID(t, s, u.ID)

	other := keyedParams(t, u.ID, time.Minute, "upload-1", digestB)
	_, created, err := s.CreatePhoto(t.Context(), other)
	wantErr(t, "CreatePhoto with the key and another digest", err, store.ErrIdempotencyMismatch)
	if created {
		t.Error("CreatePhoto with another digest: created true")
	}
	wantNoPhoto(t, s, "the mismatched request's photo", other.Photo.ID)
	if id := mustLastEventID(t, s, u.ID); id != lastEvent {
		t.Errorf("LastEventID after the mismatch = %d, want %d", id, lastEvent)
	}
	wantJobs(t, s, "CreatePhoto with another digest", processKind, first.Job)
	_, err = byKey(t, s, u.ID, "upload-1", digestB, time.Minute)
	wantErr(t, "PhotoByIdempotencyKey with another digest", err, store.ErrIdempotencyMismatch)
	got, err := byKey(t, s, u.ID, "upload-1", digestA, time.Minute)
	wantErr(t, "PhotoByIdempotencyKey with the first digest", err, nil)
	checkPhoto(t, "the key's photo after a mismatch", got, want)
}

// testIdempotencyPerOwner: another owner's same key is another key, with
// its own digest.
func testIdempotencyPerOwner(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	other := mustCreateUser(t, s, "Bob")
	mine := mustCreateKeyed(t, s, keyedParams(t, u.ID, 0, "upload-1", digestA))
	_, err := byKey(t, s, other.ID, "upload-1", "", 0)
	wantErr(t, "PhotoByIdempotencyKey of another owner", err, store.ErrNotFound)

	theirs := mustCreateKeyed(t, s, keyedParams(t, other.ID, 0, "upload-1", digestB))
	for _, k := range []struct {
		owner, digest string
		want          store.Photo
	}{{u.ID, digestA, mine}, {other.ID, digestB, theirs}} {
		got, err := byKey(t, s, k.owner, "upload-1", k.digest, 0)
		wantErr(t, "PhotoByIdempotencyKey", err, nil)
		checkPhoto(t, "each owner's key", got, k.want)
	}
}

// testIdempotencyGoesWithPhoto: once the key's photo is deleted, the key
// is not found and creates anew.
func testIdempotencyGoesWithPhoto(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	firstParams := keyedParams(t, u.ID, 0, "upload-1", digestA)
	first := mustCreateKeyed(t, s, firstParams)
	_, _, err := s.DeletePhoto(t.Context(), store.DeletePhotoParams{ID: first.ID, OwnerID: u.ID, Now: baseTime()})
	wantErr(t, "DeletePhoto", err, nil)
	_, err = byKey(t, s, u.ID, "upload-1", digestA, time.Minute)
	wantErr(t, "PhotoByIdempotencyKey after deleting the key's photo", err, store.ErrNotFound)
	again := keyedParams(t, u.ID, 2*time.Minute, "upload-1", digestA)
	if got := mustCreateKeyed(t, s, again); got.ID != again.Photo.ID {
		t.Errorf("CreatePhoto after deleting the key's photo: ID %s, want the new %s", got.ID, again.Photo.ID)
	}
	wantJobs(t, s, "CreatePhoto after deleting the key's photo", processKind, firstParams.Job, again.Job)
}

// testIdempotencyExpiry: a key answers until its ExpiresAt, then is not
// found, and the same key (with any digest) creates a new photo and holds
// the new digest. The old photo stays.
func testIdempotencyExpiry(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	firstParams := keyedParams(t, u.ID, 0, "upload-1", digestA)
	first := mustCreateKeyed(t, s, firstParams)
	if _, err := byKey(t, s, u.ID, "upload-1", digestA, keyTTL-time.Microsecond); err != nil {
		t.Fatalf("PhotoByIdempotencyKey just before the expiry: %v", err)
	}
	_, err := byKey(t, s, u.ID, "upload-1", digestA, keyTTL)
	wantErr(t, "PhotoByIdempotencyKey at the expiry", err, store.ErrNotFound)

	// A retry just before the expiry is still a retry.
	early := keyedParams(t, u.ID, keyTTL-time.Microsecond, "upload-1", digestB)
	early.Idempotency.ExpiresAt = baseTime().Add(2 * keyTTL)
	_, _, err = s.CreatePhoto(t.Context(), early)
	wantErr(t, "CreatePhoto with another digest just before the expiry", err, store.ErrIdempotencyMismatch)

	later := keyedParams(t, u.ID, keyTTL, "upload-1", digestB)
	later.Idempotency.ExpiresAt = baseTime().Add(2 * keyTTL)
	second := mustCreateKeyed(t, s, later)
	got, err := byKey(t, s, u.ID, "upload-1", digestB, keyTTL)
	wantErr(t, "PhotoByIdempotencyKey of the key taken anew", err, nil)
	checkPhoto(t, "PhotoByIdempotencyKey of the key taken anew", got, second)
	_, err = byKey(t, s, u.ID, "upload-1", digestA, keyTTL)
	wantErr(t, "PhotoByIdempotencyKey with the expired key's digest", err, store.ErrIdempotencyMismatch)
	mustReadPhoto(t, s, first.ID)
	wantJobs(t, s, "CreatePhoto around the expiry", processKind, firstParams.Job, later.Job)
}

// testIdempotencyPrune: PruneIdempotencyKeys deletes the keys expired at
// now, a batch at a time, and no other; the photos stay, and a pruned key
// creates anew.
func testIdempotencyPrune(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	other := mustCreateUser(t, s, "Bob")
	// Three keys expire at or before now, two after it.
	now := baseTime().Add(time.Hour)
	type key struct {
		owner, name string
		expires     time.Time
		photo       store.Photo
	}
	keys := []*key{
		{owner: u.ID, name: "old-1", expires: now.Add(-time.Minute)},
		{owner: other.ID, name: "old-1", expires: now.Add(-time.Second)},
		{owner: u.ID, name: "old-2", expires: now},
		{owner: u.ID, name: "live-1", expires: now.Add(time.Microsecond)},
		{owner: other.ID, name: "live-2", expires: now.Add(keyTTL)},
	}
	for _, k := range keys {
		p := keyedParams(t, k.owner, 0, k.name, digestA)
		p.Idempotency.ExpiresAt = k.expires
		k.photo = mustCreateKeyed(t, s, p)
	}
	n, err := s.PruneIdempotencyKeys(t.Context(), now, 2)
	if err != nil || n != 2 {
		t.Fatalf("PruneIdempotencyKeys(limit 2) = %d, %v; want 2", n, err)
	}
	n, err = s.PruneIdempotencyKeys(t.Context(), now, 2)
	if err != nil || n != 1 {
		t.Fatalf("second PruneIdempotencyKeys(limit 2) = %d, %v; want the last expired 1", n, err)
	}
	if n, err := s.PruneIdempotencyKeys(t.Context(), now, 2); err != nil || n != 0 {
		t.Fatalf("third PruneIdempotencyKeys = %d, %v; want 0", n, err)
	}
	// What stays still answers, even looked up at a time before its
	// expiry; what went answers at no time.
	before := -2 * time.Minute
	for _, k := range keys {
		got, err := byKey(t, s, k.owner, k.name, digestA, before)
		if k.expires.After(now) {
			wantErr(t, "PhotoByIdempotencyKey of a live key", err, nil)
			checkPhoto(t, "PhotoByIdempotencyKey of a live key", got, k.photo)
		} else {
			wantErr(t, "PhotoByIdempotencyKey of a pruned key", err, store.ErrNotFound)
		}
		mustReadPhoto(t, s, k.photo.ID)
	}
	// A pruned key creates anew, even at a time before its old expiry.
	p := keyedParams(t, u.ID, before, "old-1", digestB)
	mustCreateKeyed(t, s, p)
}

// testIdempotencyInvalid: a key needs a digest and a future expiry.
func testIdempotencyInvalid(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	for _, tt := range []struct {
		name string
		edit func(*store.Idempotency)
	}{
		{"no digest", func(i *store.Idempotency) { i.Digest = "" }},
		{"no expiry", func(i *store.Idempotency) { i.ExpiresAt = time.Time{} }},
		{"expiring as it is taken", func(i *store.Idempotency) { i.ExpiresAt = baseTime() }},
	} {
		p := keyedParams(t, u.ID, 0, "upload-1", digestA)
		tt.edit(&p.Idempotency)
		_, _, err := s.CreatePhoto(t.Context(), p)
		wantErr(t, "CreatePhoto with "+tt.name, err, store.ErrInvalid)
		wantNoPhoto(t, s, "photo of "+tt.name, p.Photo.ID)
	}
	wantJobs(t, s, "invalid CreatePhoto", processKind)
}

// testIdempotencyRace: creates racing with one key make one photo; every
// other call returns it (same digest) or ErrIdempotencyMismatch (another
// digest). This holds for calls from several processes too, which a
// store must enforce in the database.
func testIdempotencyRace(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	const n = 8
	params := make([]store.CreatePhotoParams, n)
	for i := range params {
		d := digestA
		if i%2 == 1 {
			d = digestB
		}
		params[i] = keyedParams(t, u.ID, 0, "upload-1", d)
	}
	type result struct {
		ph      store.Photo
		created bool
		err     error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i, p := range params {
		wg.Go(func() {
			ph, created, err := s.CreatePhoto(t.Context(), p)
			results[i] = result{ph, created, err}
		})
	}
	wg.Wait()
	winner := -1
	for i, r := range results {
		if r.created {
			if winner >= 0 {
				t.Fatalf("calls %d and %d both created a photo with one key", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no call created the photo: %+v", results)
	}
	want := results[winner].ph
	for i, r := range results {
		if i == winner {
			continue
		}
		wantNoPhoto(t, s, "a losing call's photo", params[i].Photo.ID)
		if params[i].Idempotency.Digest == params[winner].Idempotency.Digest {
			wantErr(t, "a losing call with the winner's digest", r.err, nil)
			if r.ph.ID != want.ID {
				t.Errorf("call %d returned photo %s, want the winner's %s", i, r.ph.ID, want.ID)
			}
		} else {
			wantErr(t, "a losing call with another digest", r.err, store.ErrIdempotencyMismatch)
		}
	}
	page, err := s.ListPhotos(t.Context(), store.ListPhotosParams{OwnerID: u.ID, Limit: 10, Freshness: store.MustBeFresh})
	wantErr(t, "ListPhotos", err, nil)
	if len(page) != 1 {
		t.Errorf("%d photos after the race, want 1", len(page))
	}
	wantJobs(t, s, "racing CreatePhoto", processKind, params[winner].Job)
}
