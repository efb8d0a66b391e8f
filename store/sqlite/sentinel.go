package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"onebox/store"
)

const (
	writeSentinelSQL = `INSERT INTO backup_sentinel (id, written_at) VALUES (1, ?)
ON CONFLICT (id) DO UPDATE SET written_at = max(written_at, excluded.written_at)`
	hasSentinelSQL  = `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'backup_sentinel'`
	readSentinelSQL = `SELECT written_at FROM backup_sentinel WHERE id = 1`
)

// WriteSentinel sets the backup sentinel's time to at, unless it holds a
// later one: a one-row write that a backup taken after it commits must
// hold (see backup.Verify). It never goes back, so of two verifications
// at once (a CLI beside the service) the one whose time was read first
// but committed last cannot hide the other's.
func (s *Store) WriteSentinel(ctx context.Context, at time.Time) error {
	return s.run(ctx, s.writer, "backup_sentinel_write", writeSentinelSQL, func(st *sql.Stmt) error {
		_, err := st.ExecContext(ctx, formatTime(at))
		return err
	})
}

// Sentinel returns the time of the last WriteSentinel, or
// store.ErrNotFound if there was none, including in a database from
// before the sentinel existed (it is read without migrating: a restored
// copy is inspected as it is).
func (s *Store) Sentinel(ctx context.Context) (time.Time, error) {
	var tables int
	if err := s.run(ctx, s.reader, "backup_sentinel_table", hasSentinelSQL, func(st *sql.Stmt) error {
		return st.QueryRowContext(ctx).Scan(&tables)
	}); err != nil {
		return time.Time{}, err
	}
	if tables == 0 {
		return time.Time{}, fmt.Errorf("sqlite backup_sentinel: no such table: %w", store.ErrNotFound)
	}
	var at time.Time
	err := s.run(ctx, s.reader, "backup_sentinel", readSentinelSQL, func(st *sql.Stmt) error {
		return st.QueryRowContext(ctx).Scan(textTime{&at})
	})
	return at, err
}
