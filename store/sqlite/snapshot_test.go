package sqlite_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"onebox/store"
	"onebox/store/sqlite"
)

// TestFreshAcrossProcesses: two Stores on one file stand for two
// instances. Reads that must be fresh (sessions, MustBeFresh) see the
// other's writes at once, even while shared snapshots are in use; a
// MayBeStale read sees them within a bounded time; and each Store sees
// its own writes at once, also after a quiet spell in which its reads
// shared snapshots.
func TestFreshAcrossProcesses(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "onebox.db")
	a := mustNew(t, sqlite.Options{Path: path})
	b := mustNew(t, sqlite.Options{Path: path})
	u := mustCreateUser(t, a)
	ctx := t.Context()
	stale := store.UserParams{ID: u.ID, Freshness: store.MayBeStale}
	fresh := store.UserParams{ID: u.ID, Freshness: store.MustBeFresh}
	bio := func(s string) *string { return &s }

	for round := range 3 {
		// Quiet: no write for a while, so b's stale reads share a
		// snapshot, which must not hide a's writes from fresh reads.
		time.Sleep(150 * time.Millisecond)
		if _, err := b.User(ctx, stale); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte{byte(round)})
		hash := hex.EncodeToString(sum[:])
		now := time.Now()
		if err := a.CreateSession(ctx, store.Session{TokenHash: hash, UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Session(ctx, hash, now); err != nil {
			t.Fatalf("round %d: a session made by the other instance: %v", round, err)
		}
		if err := a.DeleteSession(ctx, hash); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Session(ctx, hash, now); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("round %d: a session the other instance revoked: %v, want ErrNotFound", round, err)
		}
		up, err := a.UpdateUser(ctx, store.UpdateUserParams{ID: u.ID, Bio: bio("x"), Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := b.User(ctx, fresh); err != nil || got.Version != up.Version {
			t.Fatalf("round %d: fresh read after the other instance's update: version %d, %v; want %d", round, got.Version, err, up.Version)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, err := b.User(ctx, stale)
			if err != nil {
				t.Fatal(err)
			}
			if got.Version == up.Version {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: a stale read still shows version %d of %d after 5 s", round, got.Version, up.Version)
			}
			time.Sleep(10 * time.Millisecond)
		}

		// Its own writes: b reads a stale snapshot, writes, and reads
		// again.
		time.Sleep(150 * time.Millisecond)
		if _, err := b.User(ctx, stale); err != nil {
			t.Fatal(err)
		}
		up, err = b.UpdateUser(ctx, store.UpdateUserParams{ID: u.ID, Bio: bio("y"), Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := b.User(ctx, stale); err != nil || got.Version != up.Version {
			t.Fatalf("round %d: own update: version %d, %v; want %d", round, got.Version, err, up.Version)
		}
	}
}
