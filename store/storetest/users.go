package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"onebox/store"
)

func userCases() []testCase {
	return []testCase{
		{"CreateAndRead", testCreateAndRead},
		{"Credentials", testCredentials},
		{"UserByHandle", testUserByHandle},
		{"HandleConflict", testHandleConflict},
		{"NotFound", testUserNotFound},
		{"ListPaging", testListPaging},
		{"UpdateFields", testUpdateFields},
		{"UpdateIfVersion", testUpdateIfVersion},
		{"UpdateNotFound", testUpdateNotFound},
		{"UpdateConcurrent", testUpdateConcurrent},
		{"SetPasswordKeepsOne", func(t *testing.T, s store.Store) { testSetPassword(t, s, true) }},
		{"SetPasswordRevokesAll", func(t *testing.T, s store.Store) { testSetPassword(t, s, false) }},
		{"DeleteUser", testDeleteUser},
		{"CancelledReads", testCancelledReads},
	}
}

// testCancelledReads: a read for a caller that has already given up is
// refused with the context's error, however cheap the read.
func testCancelledReads(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	live, cancelled := t.Context(), func() context.Context {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		return ctx
	}()
	reads := []struct {
		name string
		read func(context.Context) error
	}{
		{"User", func(ctx context.Context) error {
			_, err := s.User(ctx, store.UserParams{ID: u.ID, Freshness: store.MayBeStale})
			return err
		}},
		{"Credentials", func(ctx context.Context) error { _, err := s.Credentials(ctx, "Alice"); return err }},
		{"UserByHandle", func(ctx context.Context) error {
			_, err := s.UserByHandle(ctx, store.UserByHandleParams{Handle: "Alice", Freshness: store.MayBeStale})
			return err
		}},
		{"Session", func(ctx context.Context) error { _, err := s.Session(ctx, "no-such-hash", baseTime()); return err }},
		{"ListUsers", func(ctx context.Context) error {
			_, err := s.ListUsers(ctx, store.ListUsersParams{Limit: 10})
			return err
		}},
	}
	// Once with a live context first: a backend may prepare a statement
	// on first use, which would fail for its own reasons.
	for _, r := range reads {
		if err := r.read(live); err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s: %v", r.name, err)
		}
	}
	for _, r := range reads {
		if err := r.read(cancelled); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want context.Canceled", r.name, err)
		}
	}
}

func testCreateAndRead(t *testing.T, s store.Store) {
	p := store.CreateUserParams{
		ID:           newID(t),
		Handle:       "Alice",
		DisplayName:  "Alice Liddell",
		PasswordHash: "hash",
		Now:          baseTime(),
	}
	want := store.User{
		ID:          p.ID,
		Handle:      "Alice", // as typed: only comparisons ignore case
		DisplayName: "Alice Liddell",
		CreatedAt:   p.Now,
		UpdatedAt:   p.Now,
		Version:     1,
	}
	got, err := s.CreateUser(t.Context(), p)
	wantErr(t, "CreateUser", err, nil)
	checkUser(t, "CreateUser", got, want)

	for _, f := range []store.Freshness{store.MayBeStale, store.MustBeFresh} {
		got, err := s.User(t.Context(), store.UserParams{ID: p.ID, Freshness: f})
		wantErr(t, "User", err, nil)
		checkUser(t, fmt.Sprintf("User(freshness %d)", f), got, want)
	}
}

func testCredentials(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	for _, handle := range []string{"Alice", "alice", "ALICE"} {
		got, err := s.Credentials(t.Context(), handle)
		wantErr(t, "Credentials("+handle+")", err, nil)
		if want := (store.Credentials{UserID: u.ID, PasswordHash: "hash-of-Alice"}); got != want {
			t.Errorf("Credentials(%q) = %+v, want %+v", handle, got, want)
		}
	}
	_, err := s.Credentials(t.Context(), "bob")
	wantErr(t, "Credentials(unknown)", err, store.ErrNotFound)
}

// testUserByHandle: the handle compares as sign-up compares it, and the
// user comes back as User returns it, at either freshness.
func testUserByHandle(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	mustCreateUser(t, s, "Bob")
	for _, f := range []store.Freshness{store.MayBeStale, store.MustBeFresh} {
		for _, handle := range []string{"Alice", "alice", "ALICE"} {
			got, err := s.UserByHandle(t.Context(), store.UserByHandleParams{Handle: handle, Freshness: f})
			wantErr(t, "UserByHandle("+handle+")", err, nil)
			checkUser(t, fmt.Sprintf("UserByHandle(%q, freshness %d)", handle, f), got, u)
		}
		for _, handle := range []string{"Alic", "Alice2", ""} {
			_, err := s.UserByHandle(t.Context(), store.UserByHandleParams{Handle: handle, Freshness: f})
			wantErr(t, "UserByHandle("+handle+")", err, store.ErrNotFound)
		}
	}
}

func testHandleConflict(t *testing.T, s store.Store) {
	mustCreateUser(t, s, "Alice")
	for _, handle := range []string{"Alice", "alice", "ALICE", "aLiCe"} {
		_, err := s.CreateUser(t.Context(), store.CreateUserParams{
			ID: newID(t), Handle: handle, DisplayName: "x", PasswordHash: "x", Now: baseTime(),
		})
		wantErr(t, "CreateUser("+handle+")", err, store.ErrConflict)
	}
	mustCreateUser(t, s, "Alicia")
}

func testUserNotFound(t *testing.T, s store.Store) {
	id := newID(t)
	for _, f := range []store.Freshness{store.MayBeStale, store.MustBeFresh} {
		_, err := s.User(t.Context(), store.UserParams{ID: id, Freshness: f})
		wantErr(t, fmt.Sprintf("User(freshness %d)", f), err, store.ErrNotFound)
	}
	err := s.SetPassword(t.Context(), store.SetPasswordParams{UserID: id, PasswordHash: "x", Now: baseTime()})
	wantErr(t, "SetPassword", err, store.ErrNotFound)
	wantErr(t, "DeleteUser", s.DeleteUser(t.Context(), store.DeleteUserParams{ID: id}), store.ErrNotFound)
}

func testListPaging(t *testing.T, s store.Store) {
	// Create in random order: the list must come back in ID order anyway.
	ids := make([]string, 25)
	for i := range ids {
		ids[i] = newID(t)
	}
	order := rand.Perm(len(ids))
	for _, i := range order {
		_, err := s.CreateUser(t.Context(), store.CreateUserParams{
			ID: ids[i], Handle: fmt.Sprintf("user%02d", i), DisplayName: "x", PasswordHash: "x", Now: baseTime(),
		})
		wantErr(t, "CreateUser", err, nil)
	}
	slices.Sort(ids)

	var got []string
	var sizes []int
	after := ""
	for range 5 { // bounded: a store that never ends must not hang the test
		page, err := s.ListUsers(t.Context(), store.ListUsersParams{AfterID: after, Limit: 10})
		wantErr(t, "ListUsers", err, nil)
		sizes = append(sizes, len(page))
		if len(page) == 0 {
			break
		}
		for _, u := range page {
			got = append(got, u.ID)
			if u.Version != 1 || u.CreatedAt.Location() != time.UTC {
				t.Errorf("listed user %+v: want version 1 and UTC times", u)
			}
		}
		after = page[len(page)-1].ID
	}
	if want := []int{10, 10, 5, 0}; !slices.Equal(sizes, want) {
		t.Errorf("page sizes %v, want %v", sizes, want)
	}
	if !slices.Equal(got, ids) {
		t.Errorf("listed IDs (duplicated, missing or out of order):\n got %v\nwant %v", got, ids)
	}
}

func testUpdateFields(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	str := func(s string) *string { return &s }
	// The steps run in order on one user; each names what it expects after.
	steps := []struct {
		name              string
		displayName, bio  *string
		wantName, wantBio string
	}{
		{"display name only", str("Al"), nil, "Al", ""},
		{"bio only", nil, str("hello"), "Al", "hello"},
		{"both", str("Alice L."), str("hi there"), "Alice L.", "hi there"},
		{"clear bio", nil, str(""), "Alice L.", ""},
		{"clear display name", str(""), nil, "", ""},
		{"no fields still bumps", nil, nil, "", ""},
	}
	for i, step := range steps {
		now := baseTime().Add(time.Duration(i+1) * time.Minute)
		got, err := s.UpdateUser(t.Context(), store.UpdateUserParams{
			ID: u.ID, DisplayName: step.displayName, Bio: step.bio, Now: now,
		})
		wantErr(t, step.name, err, nil)
		want := u
		want.DisplayName, want.Bio = step.wantName, step.wantBio
		want.UpdatedAt = now
		want.Version = int64(i + 2)
		checkUser(t, step.name, got, want)

		read, err := s.User(t.Context(), store.UserParams{ID: u.ID, Freshness: store.MustBeFresh})
		wantErr(t, step.name+": User", err, nil)
		checkUser(t, step.name+": read back", read, want)
	}
}

func testUpdateIfVersion(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	name := func(s string) *string { return &s }
	update := func(ifVersion int64, displayName string) (store.User, error) {
		return s.UpdateUser(t.Context(), store.UpdateUserParams{
			ID: u.ID, IfVersion: ifVersion, DisplayName: name(displayName), Now: baseTime(),
		})
	}

	got, err := update(1, "v2")
	wantErr(t, "update at version 1", err, nil)
	if got.Version != 2 {
		t.Fatalf("version after update = %d, want 2", got.Version)
	}
	_, err = update(1, "stale")
	wantErr(t, "update at stale version 1", err, store.ErrVersionMismatch)
	_, err = update(5, "future")
	wantErr(t, "update at future version 5", err, store.ErrVersionMismatch)

	read, err := s.User(t.Context(), store.UserParams{ID: u.ID, Freshness: store.MustBeFresh})
	wantErr(t, "User", err, nil)
	if read.Version != 2 || read.DisplayName != "v2" {
		t.Errorf("after refused updates: %+v, want version 2 named v2", read)
	}
	got, err = update(2, "v3")
	wantErr(t, "update at version 2", err, nil)
	if got.Version != 3 {
		t.Errorf("version = %d, want 3", got.Version)
	}
}

func testUpdateNotFound(t *testing.T, s store.Store) {
	deleted := mustCreateUser(t, s, "Gone")
	wantErr(t, "DeleteUser", s.DeleteUser(t.Context(), store.DeleteUserParams{ID: deleted.ID}), nil)
	tests := []struct {
		name      string
		id        string
		ifVersion int64
	}{
		{"never existed", newID(t), 0},
		{"never existed, with version", newID(t), 1},
		{"deleted", deleted.ID, 0},
		{"deleted, with its last version", deleted.ID, 1},
	}
	for _, tt := range tests {
		_, err := s.UpdateUser(t.Context(), store.UpdateUserParams{ID: tt.id, IfVersion: tt.ifVersion, Now: baseTime()})
		wantErr(t, tt.name, err, store.ErrNotFound)
	}
}

// testUpdateConcurrent: unconditional updates of one user from many
// goroutines all succeed, each exactly once. Lock waits stay inside the
// store: none may surface as ErrBusy under the default timeouts.
func testUpdateConcurrent(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	const n = 20
	var g errgroup.Group
	for i := range n {
		g.Go(func() error {
			bio := fmt.Sprintf("writer %d", i)
			_, err := s.UpdateUser(t.Context(), store.UpdateUserParams{ID: u.ID, Bio: &bio, Now: baseTime()})
			return err
		})
	}
	wantErr(t, "concurrent UpdateUser", g.Wait(), nil)
	got, err := s.User(t.Context(), store.UserParams{ID: u.ID, Freshness: store.MustBeFresh})
	wantErr(t, "User", err, nil)
	if got.Version != n+1 {
		t.Errorf("version = %d after %d updates, want %d", got.Version, n, n+1)
	}
}

// testSetPassword changes the password of a user with three sessions,
// keeping one of them when keepOne is set.
func testSetPassword(t *testing.T, s store.Store, keepOne bool) {
	u := mustCreateUser(t, s, "Alice")
	other := mustCreateUser(t, s, "Bob")
	mine := mustCreateSession(t, s, u.ID, time.Hour)
	mustCreateSession(t, s, u.ID, time.Hour)
	mustCreateSession(t, s, u.ID, time.Hour)
	theirs := mustCreateSession(t, s, other.ID, time.Hour)

	p := store.SetPasswordParams{UserID: u.ID, PasswordHash: "new-hash", Now: baseTime().Add(time.Minute)}
	want := []string{}
	if keepOne {
		p.KeepTokenHash = mine.TokenHash
		want = []string{mine.TokenHash}
	}
	wantErr(t, "SetPassword", s.SetPassword(t.Context(), p), nil)

	creds, err := s.Credentials(t.Context(), u.Handle)
	wantErr(t, "Credentials", err, nil)
	if creds.PasswordHash != "new-hash" {
		t.Errorf("password hash = %q, want new-hash", creds.PasswordHash)
	}
	left, err := s.UserSessions(t.Context(), u.ID)
	wantErr(t, "UserSessions", err, nil)
	if !slices.Equal(left, want) {
		t.Errorf("sessions left = %v, want %v", left, want)
	}
	_, err = s.Session(t.Context(), theirs.TokenHash, baseTime())
	wantErr(t, "another user's session", err, nil)

	// The password is not part of the profile: no new version.
	read, err := s.User(t.Context(), store.UserParams{ID: u.ID, Freshness: store.MustBeFresh})
	wantErr(t, "User", err, nil)
	checkUser(t, "profile after SetPassword", read, u)
}

func testDeleteUser(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	other := mustCreateUser(t, s, "Bob")
	sess := mustCreateSession(t, s, u.ID, time.Hour)
	theirs := mustCreateSession(t, s, other.ID, time.Hour)

	wantErr(t, "DeleteUser", s.DeleteUser(t.Context(), store.DeleteUserParams{ID: u.ID}), nil)

	_, err := s.User(t.Context(), store.UserParams{ID: u.ID, Freshness: store.MustBeFresh})
	wantErr(t, "User", err, store.ErrNotFound)
	_, err = s.Credentials(t.Context(), u.Handle)
	wantErr(t, "Credentials", err, store.ErrNotFound)
	_, err = s.Session(t.Context(), sess.TokenHash, baseTime())
	wantErr(t, "Session of the deleted user", err, store.ErrNotFound)
	hashes, err := s.UserSessions(t.Context(), u.ID)
	wantErr(t, "UserSessions", err, nil)
	if len(hashes) != 0 {
		t.Errorf("sessions of the deleted user: %v", hashes)
	}
	wantErr(t, "DeleteUser again", s.DeleteUser(t.Context(), store.DeleteUserParams{ID: u.ID}), store.ErrNotFound)

	_, err = s.Session(t.Context(), theirs.TokenHash, baseTime())
	wantErr(t, "another user's session", err, nil)
	mustCreateUser(t, s, "alice") // the handle is free again
}
