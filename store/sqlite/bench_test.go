package sqlite_test

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"testing"
	"time"

	"onebox/store"
	"onebox/store/sqlite"
)

const benchUsers = 10_000

// benchStore returns a store seeded with benchUsers users, and their IDs.
func benchStore(b *testing.B) (*sqlite.Store, []string) {
	b.Helper()
	s := mustNew(b, sqlite.Options{})
	users := seedParams(b, benchUsers)
	if err := s.SeedUsers(b.Context(), users); err != nil {
		b.Fatalf("SeedUsers: %v", err)
	}
	ids := make([]string, len(users))
	for i, u := range users {
		ids[i] = u.ID
	}
	return s, ids
}

func BenchmarkUserByID(b *testing.B) {
	s, ids := benchStore(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, err := s.User(b.Context(), store.UserParams{ID: ids[rand.IntN(len(ids))]})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkSessionByHash(b *testing.B) {
	s, ids := benchStore(b)
	now := time.Now()
	hashes := make([]string, len(ids))
	for i, id := range ids {
		sum := sha256.Sum256([]byte(id))
		hashes[i] = hex.EncodeToString(sum[:])
		err := s.CreateSession(b.Context(), store.Session{
			TokenHash: hashes[i], UserID: id, CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, err := s.Session(b.Context(), hashes[rand.IntN(len(hashes))], now)
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkUpdateUser(b *testing.B) {
	s, ids := benchStore(b)
	bio := "benchmarking"
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, err := s.UpdateUser(b.Context(), store.UpdateUserParams{
				ID: ids[rand.IntN(len(ids))], Bio: &bio, Now: time.Now(),
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}
