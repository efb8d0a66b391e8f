// Package storetest is the conformance suite for store.Store. Every
// implementation's tests call Run; a change of behaviour lands here
// first, then in the implementations.
package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"onebox/store"
)

// testCase is one behaviour, checked on a fresh store.
type testCase struct {
	name string
	run  func(t *testing.T, s store.Store)
}

// Run runs every case as a parallel subtest on its own store from
// newStore, which must return an empty, migrated store and close it in
// t.Cleanup. One case closes its store itself, so Close must accept a
// second call. The store must also be an EnqueuedReader, or the cases
// of the writes that enqueue jobs fail.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	groups := []struct {
		name  string
		cases []testCase
	}{
		{"Users", userCases()},
		{"Sessions", sessionCases()},
		{"Photos", photoCases()},
		{"Idempotency", idempotencyCases()},
		{"Events", eventCases()},
		{"Store", storeCases()},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range g.cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, newStore(t))
				})
			}
		})
	}
}

func storeCases() []testCase {
	return []testCase{
		{"Ping", func(t *testing.T, s store.Store) {
			if err := s.Ping(t.Context()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
		}},
		{"InvalidLimits", testInvalidLimits},
		{"CallsAfterCloseFail", func(t *testing.T, s store.Store) {
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := s.Ping(ctx); err == nil {
				t.Error("Ping after Close: got nil error")
			}
			if _, err := s.User(ctx, store.UserParams{ID: newID(t)}); err == nil {
				t.Error("User after Close: got nil error")
			}
		}},
	}
}

// testInvalidLimits: every paged read refuses a limit below 1 with
// ErrInvalid, rather than reading it as no limit as SQL LIMIT may.
func testInvalidLimits(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "Alice")
	ctx := t.Context()
	lists := []struct {
		name string
		list func(limit int) error
	}{
		{"ListUsers", func(limit int) error {
			_, err := s.ListUsers(ctx, store.ListUsersParams{Limit: limit})
			return err
		}},
		{"ListPhotos", func(limit int) error {
			_, err := s.ListPhotos(ctx, store.ListPhotosParams{OwnerID: u.ID, Limit: limit})
			return err
		}},
		{"Events", func(limit int) error {
			_, err := s.Events(ctx, store.EventsParams{UserID: u.ID, Limit: limit})
			return err
		}},
		{"PruneIdempotencyKeys", func(limit int) error {
			_, err := s.PruneIdempotencyKeys(ctx, baseTime(), limit)
			return err
		}},
	}
	for _, l := range lists {
		for _, limit := range []int{0, -1} {
			wantErr(t, fmt.Sprintf("%s(limit %d)", l.name, limit), l.list(limit), store.ErrInvalid)
		}
	}
}

// baseTime is the suite's clock: a fixed instant with a fraction of a
// second, in a zone other than UTC, so stores must normalise it. The
// fraction has nanoseconds past the microsecond, above its half, so a
// store that rounds (as PostgreSQL does) rather than truncates to the
// microsecond (package store) is seen.
func baseTime() time.Time {
	return time.Date(2025, 3, 4, 5, 6, 7, 891011621, time.FixedZone("UTC+1", 3600))
}

func newID(t *testing.T) string {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatalf("uuid: %v", err)
	}
	return id.String()
}

// newTokenHash returns what a store keeps of a fresh token: its SHA-256.
func newTokenHash() string {
	sum := sha256.Sum256([]byte(rand.Text()))
	return hex.EncodeToString(sum[:])
}

func mustCreateUser(t *testing.T, s store.Store, handle string) store.User {
	t.Helper()
	u, err := s.CreateUser(t.Context(), store.CreateUserParams{
		ID:           newID(t),
		Handle:       handle,
		DisplayName:  handle + " display",
		PasswordHash: "hash-of-" + handle,
		Now:          baseTime(),
	})
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", handle, err)
	}
	return u
}

// mustCreateSession stores a session of userID created at baseTime that
// lasts for ttl.
func mustCreateSession(t *testing.T, s store.Store, userID string, ttl time.Duration) store.Session {
	t.Helper()
	sess := store.Session{
		TokenHash: newTokenHash(),
		UserID:    userID,
		CreatedAt: baseTime(),
		ExpiresAt: baseTime().Add(ttl),
	}
	if err := s.CreateSession(t.Context(), sess); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return sess
}

// wantErr fails the test unless errors.Is(err, want); a nil want
// expects no error.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s: %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// checkRow fails unless got equals want. The times that times points at
// must be in UTC and are compared as instants.
func checkRow[T comparable](t *testing.T, what string, got, want T, times func(*T) []*time.Time) {
	t.Helper()
	checkTimes(t, what, &got, &want, times)
	if got != want {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// checkTimes fails unless the times of got that times points at are in
// UTC and equal want's as instants. It then copies want's into got, so
// the caller can compare the rest with ==.
func checkTimes[T any](t *testing.T, what string, got, want *T, times func(*T) []*time.Time) {
	t.Helper()
	gotTimes, wantTimes := times(got), times(want)
	for i, gt := range gotTimes {
		if gt.Location() != time.UTC {
			t.Errorf("%s: time %d is in %v, want UTC", what, i, gt.Location())
		}
		if !sameTime(*gt, *wantTimes[i]) {
			t.Errorf("%s: time %d is %v, want %v", what, i, *gt, *wantTimes[i])
		}
		*gt = *wantTimes[i]
	}
}

// sameTime compares instants to the microsecond, the precision stores
// owe (package store): truncated, so a store that rounds is caught.
func sameTime(got, want time.Time) bool {
	return got.Truncate(time.Microsecond).Equal(want.Truncate(time.Microsecond))
}

func checkUser(t *testing.T, what string, got, want store.User) {
	t.Helper()
	checkRow(t, what, got, want, func(u *store.User) []*time.Time { return []*time.Time{&u.CreatedAt, &u.UpdatedAt} })
}

func checkSession(t *testing.T, what string, got, want store.Session) {
	t.Helper()
	// The token is the store's to set (CreateSession ignores it);
	// testSessionTokens checks it.
	got.Token, want.Token = "", ""
	checkRow(t, what, got, want, func(s *store.Session) []*time.Time { return []*time.Time{&s.CreatedAt, &s.ExpiresAt} })
}
