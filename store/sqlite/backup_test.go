package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"onebox/store"
	"onebox/store/sqlite"
)

// TestSnapshotBesideWriter: a snapshot completes while another
// transaction holds the write lock (as the running service may), and
// holds what was committed before it, not what is still uncommitted.
func TestSnapshotBesideWriter(t *testing.T) {
	t.Parallel()
	s := mustNew(t, sqlite.Options{})
	committed := mustCreateUser(t, s)

	ctx := t.Context()
	tx, err := s.Writer().BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM users`); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(t.TempDir(), "snap.db")
	// A generous bound for a hang, not a timing assertion.
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.Snapshot(sctx, path); err != nil {
		t.Fatalf("Snapshot while the write lock is held: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	snap := mustNew(t, sqlite.Options{Path: path, NoCreate: true, SkipMigrate: true})
	if err := snap.IntegrityCheck(ctx); err != nil {
		t.Error(err)
	}
	if _, err := snap.User(ctx, store.UserParams{ID: committed.ID, Freshness: store.MustBeFresh}); err != nil {
		t.Errorf("the committed user is not in the snapshot: %v", err)
	}
	counts, err := snap.RowCounts(ctx)
	if err != nil || counts["users"] != 1 {
		t.Errorf("RowCounts = %v, %v; want 1 user", counts, err)
	}
	keys, err := snap.MediaKeys(ctx)
	if err != nil || len(keys) != 0 {
		t.Errorf("MediaKeys = %v, %v; want none", keys, err)
	}
}
