package postgres_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"onebox/store"
	"onebox/store/postgres"
)

func TestSeedUsers(t *testing.T) {
	t.Parallel()
	s := mustNew(t, postgres.Options{})
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	users := make([]store.CreateUserParams, 1000)
	for i := range users {
		id := newID(t)
		users[i] = store.CreateUserParams{
			ID: id, Handle: "Seed-" + id, DisplayName: fmt.Sprintf("Seed %d", i), PasswordHash: "x", Now: now,
		}
	}
	if err := s.SeedUsers(t.Context(), users); err != nil {
		t.Fatalf("SeedUsers: %v", err)
	}
	page, err := s.ListUsers(t.Context(), store.ListUsersParams{Limit: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != len(users) {
		t.Errorf("listed %d users, want %d", len(page), len(users))
	}
	// A seeded user is one CreateUser would have made: found by its
	// handle in any case, version 1, the given time.
	last := users[len(users)-1]
	u, err := s.UserByHandle(t.Context(), store.UserByHandleParams{Handle: strings.ToLower(last.Handle)})
	if err != nil {
		t.Fatalf("UserByHandle: %v", err)
	}
	if u.ID != last.ID || u.Version != 1 || !u.CreatedAt.Equal(now) || !u.UpdatedAt.Equal(now) {
		t.Errorf("seeded user = %+v, want id %s, version 1, created and updated %v", u, last.ID, now)
	}

	// A batch with one taken handle inserts nothing.
	batch := users[:0:0]
	for i := range 10 {
		id := newID(t)
		batch = append(batch, store.CreateUserParams{ID: id, Handle: "seed-" + id, DisplayName: fmt.Sprint(i), PasswordHash: "x", Now: now})
	}
	batch[9].Handle = strings.ToUpper(users[0].Handle)
	if err := s.SeedUsers(t.Context(), batch); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("SeedUsers with a taken handle: got %v, want store.ErrConflict", err)
	}
	if _, err := s.User(t.Context(), store.UserParams{ID: batch[0].ID}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("first user of a failed batch: got %v, want store.ErrNotFound", err)
	}
}
