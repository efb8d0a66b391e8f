package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"onebox/store"
	"onebox/store/internal/sqlutil"
)

const (
	insertEventSQL = `INSERT INTO events (user_id, photo_id, created_at) VALUES (?, ?, ?)`
	// The (user_id, id) index seeks to AfterID; the photo is a filter.
	eventsAfterSQL = `SELECT id, user_id, photo_id, created_at FROM events
WHERE user_id = ?1 AND id > ?2 AND (?3 = '' OR photo_id = ?3)
ORDER BY id LIMIT ?4`
	lastEventIDSQL      = `SELECT coalesce(max(id), 0) FROM events WHERE user_id = ?`
	deleteUserEventsSQL = `DELETE FROM events WHERE user_id = ?`
	// IDs grow with time, so the oldest events are the first ids: the
	// subquery reads ?2 rows from the start of the table and stops, where
	// a WHERE created_at < ?1 over the table would scan past every newer
	// event when none is old enough.
	pruneEventsSQL = `DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?2) AND created_at < ?1`
)

// insertEvent records, in tx, that photoID of userID changed at now
// (formatted by formatTime).
func (s *Store) insertEvent(ctx context.Context, tx *sql.Tx, userID, photoID, now string) error {
	_, err := s.txExec(ctx, tx, "events_insert", insertEventSQL, userID, photoID, now)
	return err
}

func scanEvent(r scanner, ev *store.Event) error {
	return r.Scan(&ev.ID, &ev.UserID, &ev.PhotoID, textTime{&ev.CreatedAt})
}

// Events returns up to p.Limit events of p.UserID (of p.PhotoID only, if
// set) with ID > p.AfterID, oldest first. It reads the reader pool, which
// sees every committed event. store.ErrInvalid if p.Limit < 1.
//
// IDs follow commit order, as store.Photos.Events requires, because
// writers take the database's one write lock in turn (BEGIN IMMEDIATE)
// and AUTOINCREMENT numbers an event inside it: no transaction holding a
// smaller ID can still be open when a larger one commits.
func (s *Store) Events(ctx context.Context, p store.EventsParams) ([]store.Event, error) {
	if p.Limit < 1 {
		// SQLite reads a negative LIMIT as no limit at all.
		return nil, fmt.Errorf("sqlite events_after: limit %d: %w", p.Limit, store.ErrInvalid)
	}
	return queryAll(ctx, s, s.reader, "events_after", eventsAfterSQL, scanEvent, p.UserID, p.AfterID, p.PhotoID, p.Limit)
}

// LastEventID is the newest event id of userID, 0 if there is none (an
// unknown user has none).
func (s *Store) LastEventID(ctx context.Context, userID string) (int64, error) {
	return readOne(ctx, s, store.MustBeFresh, "events_last_id", lastEventIDSQL, sqlutil.ScanValue[int64], userID)
}

// PruneEvents deletes up to limit of the oldest events created before
// before. An event older than one it keeps (a clock that stepped back)
// waits until those ahead of it go. store.ErrInvalid if limit < 1.
func (s *Store) PruneEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("sqlite events_prune: limit %d: %w", limit, store.ErrInvalid)
	}
	var n int64
	err := s.run(ctx, s.writer, "events_prune", pruneEventsSQL, func(st *sql.Stmt) error {
		res, err := st.ExecContext(ctx, formatTime(before), limit)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}
