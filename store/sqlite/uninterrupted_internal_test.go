package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"modernc.org/sqlite"

	"onebox/internal/stmtcache"
)

// TestUninterrupted: on the writer's connections a statement in a
// transaction runs to its end when its context ends 2 ms in; outside a
// transaction, and again after one ended, it is interrupted.
func TestUninterrupted(t *testing.T) {
	t.Parallel()
	db := sql.OpenDB(uninterrupted{stmtcache.New(&sqlite.Driver{}, filepath.Join(t.TempDir(), "u.db"), 8)})
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE u (n INTEGER)`); err != nil {
		t.Fatal(err)
	}
	// 50 ms here, seconds under -race.
	const long = `INSERT INTO u WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) SELECT max(i) FROM n`
	run := func(exec func(ctx context.Context) error) error {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		time.AfterFunc(2*time.Millisecond, cancel)
		return exec(ctx)
	}
	alone := func(ctx context.Context) error { _, err := db.ExecContext(ctx, long); return err }

	if err := run(alone); !errors.Is(err, context.Canceled) {
		t.Errorf("outside a transaction: %v, want it interrupted", err)
	}
	tx, err := db.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(func(ctx context.Context) error { _, err := tx.ExecContext(ctx, long); return err }); err != nil {
		t.Errorf("in a transaction: %v, want it run to its end", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := run(alone); !errors.Is(err, context.Canceled) {
		t.Errorf("after a transaction: %v, want it interrupted", err)
	}
}
