package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"onebox/store"
	"onebox/store/internal/sqlutil"
)

const (
	insertEventSQL = `insert into events (user_id, photo_id, created_at) values ($1, $2, $3)`
	// The (user_id, id) index seeks to AfterID; the photo is a filter.
	eventsAfterSQL = `select id, user_id, photo_id, created_at from events
where user_id = $1 and id > $2 and ($3::text = '' or photo_id = $3::text)
order by id limit $4`
	lastEventIDSQL      = `select coalesce(max(id), 0) from events where user_id = $1`
	deleteUserEventsSQL = `delete from events where user_id = $1`
	// IDs grow with time, so the oldest events are the first ids: the
	// subquery reads $2 rows from the start of the table and stops.
	pruneEventsSQL = `delete from events where id in (select id from events order by id limit $2) and created_at < $1`
)

// insertEvent records, in tx, that photoID of userID changed at now. The
// caller has taken the user's event lock (lockUserEvents) in tx.
func (s *Store) insertEvent(ctx context.Context, tx *sql.Tx, userID, photoID string, now time.Time) error {
	_, err := s.txExec(ctx, tx, "events_insert", insertEventSQL, userID, photoID, utc(now))
	if err == nil && s.test.afterEvent != nil {
		s.test.afterEvent()
	}
	return err
}

func scanEvent(r scanner, ev *store.Event) error {
	return r.Scan(&ev.ID, &ev.UserID, &ev.PhotoID, utcTime{&ev.CreatedAt})
}

// Events returns up to p.Limit events of p.UserID (of p.PhotoID only, if
// set) with ID > p.AfterID, oldest first, from the primary.
// store.ErrInvalid if p.Limit < 1.
//
// IDs follow commit order within a user, as store.Photos.Events
// requires: every transaction that inserts an event of a user holds the
// user's advisory lock from before it takes the ID until it commits
// (lockUserEvents), so no smaller ID of the user is still in flight when
// a larger one becomes visible.
func (s *Store) Events(ctx context.Context, p store.EventsParams) ([]store.Event, error) {
	if p.Limit < 1 {
		return nil, fmt.Errorf("postgres events_after: limit %d: %w", p.Limit, store.ErrInvalid)
	}
	return queryAll(ctx, s, s.reader(store.MustBeFresh, ""), "events_after", eventsAfterSQL, scanEvent, p.UserID, p.AfterID, p.PhotoID, p.Limit)
}

// LastEventID is the newest event id of userID, 0 if there is none (an
// unknown user has none).
func (s *Store) LastEventID(ctx context.Context, userID string) (int64, error) {
	return readOne(ctx, s, s.reader(store.MustBeFresh, ""), "events_last_id", lastEventIDSQL, sqlutil.ScanValue[int64], userID)
}

// PruneEvents deletes up to limit of the oldest events created before
// before. store.ErrInvalid if limit < 1.
func (s *Store) PruneEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("postgres events_prune: limit %d: %w", limit, store.ErrInvalid)
	}
	return s.execCount(ctx, "events_prune", pruneEventsSQL, utc(before), limit)
}

// execCount runs a statement outside a transaction and returns how many
// rows it changed.
func (s *Store) execCount(ctx context.Context, name, query string, args ...any) (int, error) {
	var n int64
	err := s.do(ctx, name, query, func() error {
		res, err := s.db.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}
