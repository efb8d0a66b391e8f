package storetest

import (
	"slices"
	"testing"
	"time"

	"onebox/store"
)

func sessionCases() []testCase {
	return []testCase{
		{"CreateAndRead", testSessionCreateAndRead},
		{"Expiry", testSessionExpiry},
		{"UnknownHash", testSessionUnknown},
		{"MissingUser", testSessionMissingUser},
		{"DeleteIdempotent", testSessionDelete},
		{"UserSessions", testUserSessions},
		{"Tokens", testSessionTokens},
	}
}

func testSessionCreateAndRead(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	want := mustCreateSession(t, s, u.ID, 24*time.Hour)
	got, err := s.Session(t.Context(), want.TokenHash, baseTime().Add(time.Hour))
	wantErr(t, "Session", err, nil)
	checkSession(t, "Session", got, want)
}

func testSessionExpiry(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	sess := mustCreateSession(t, s, u.ID, time.Hour)
	tests := []struct {
		name string
		now  time.Time
		want error
	}{
		{"at creation", sess.CreatedAt, nil},
		{"just before expiry", sess.ExpiresAt.Add(-time.Millisecond), nil},
		{"just after expiry", sess.ExpiresAt.Add(time.Millisecond), store.ErrNotFound},
		{"long after expiry", sess.ExpiresAt.Add(365 * 24 * time.Hour), store.ErrNotFound},
		{"after expiry, in UTC", sess.ExpiresAt.Add(time.Second).UTC(), store.ErrNotFound},
	}
	for _, tt := range tests {
		_, err := s.Session(t.Context(), sess.TokenHash, tt.now)
		wantErr(t, tt.name, err, tt.want)
	}
}

func testSessionUnknown(t *testing.T, s store.Store) {
	_, err := s.Session(t.Context(), newTokenHash(), baseTime())
	wantErr(t, "Session", err, store.ErrNotFound)
}

func testSessionMissingUser(t *testing.T, s store.Store) {
	err := s.CreateSession(t.Context(), store.Session{
		TokenHash: newTokenHash(),
		UserID:    newID(t),
		CreatedAt: baseTime(),
		ExpiresAt: baseTime().Add(time.Hour),
	})
	wantErr(t, "CreateSession", err, store.ErrNotFound)
}

func testSessionDelete(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	sess := mustCreateSession(t, s, u.ID, time.Hour)
	kept := mustCreateSession(t, s, u.ID, time.Hour)

	wantErr(t, "DeleteSession", s.DeleteSession(t.Context(), sess.TokenHash), nil)
	_, err := s.Session(t.Context(), sess.TokenHash, baseTime())
	wantErr(t, "deleted Session", err, store.ErrNotFound)
	wantErr(t, "DeleteSession again", s.DeleteSession(t.Context(), sess.TokenHash), nil)
	wantErr(t, "DeleteSession unknown", s.DeleteSession(t.Context(), newTokenHash()), nil)

	_, err = s.Session(t.Context(), kept.TokenHash, baseTime())
	wantErr(t, "other Session", err, nil)
}

func testUserSessions(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	other := mustCreateUser(t, s, "Bob")
	var want []string
	for range 3 {
		want = append(want, mustCreateSession(t, s, u.ID, time.Hour).TokenHash)
	}
	mustCreateSession(t, s, other.ID, time.Hour)

	got, err := s.UserSessions(t.Context(), u.ID)
	wantErr(t, "UserSessions", err, nil)
	// The contract promises no order.
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("UserSessions = %v, want %v", got, want)
	}

	got, err = s.UserSessions(t.Context(), newID(t))
	wantErr(t, "UserSessions(unknown user)", err, nil)
	if len(got) != 0 {
		t.Errorf("UserSessions(unknown user) = %v, want none", got)
	}
}

// testSessionTokens: MarkWritten's token is the session's, and a read at
// least at it sees the write made before it (on a store with replicas,
// whichever copy serves it). A single-copy store hands out "" throughout.
func testSessionTokens(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	sess := mustCreateSession(t, s, u.ID, time.Hour)
	created, err := s.Session(t.Context(), sess.TokenHash, baseTime())
	wantErr(t, "Session", err, nil)

	bio := "written before the token"
	_, err = s.UpdateUser(t.Context(), store.UpdateUserParams{ID: u.ID, Bio: &bio, Now: baseTime().Add(time.Second)})
	wantErr(t, "UpdateUser", err, nil)
	tok, err := s.MarkWritten(t.Context(), sess.TokenHash)
	wantErr(t, "MarkWritten", err, nil)
	got, err := s.Session(t.Context(), sess.TokenHash, baseTime())
	wantErr(t, "Session after MarkWritten", err, nil)
	if got.Token != tok {
		t.Errorf("Session's Token %q, want MarkWritten's %q", got.Token, tok)
	}
	if tok == "" {
		if created.Token != "" {
			t.Errorf("a store that marks nothing gave a new session the token %q", created.Token)
		}
		return
	}
	if created.Token == "" {
		t.Error("a store with tokens gave a new session none")
	}
	read, err := s.User(t.Context(), store.UserParams{ID: u.ID, AtLeast: tok})
	wantErr(t, "User AtLeast", err, nil)
	if read.Bio != bio {
		t.Errorf("User AtLeast the write's token: bio %q, want %q", read.Bio, bio)
	}
	_, err = s.MarkWritten(t.Context(), newTokenHash())
	wantErr(t, "MarkWritten unknown session", err, store.ErrNotFound)
}
