package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"onebox/store/internal/sqlutil"

	"onebox/jobs"
)

// Enqueued lists the messages of kind waiting in goqite's table, without
// receiving them (storetest.EnqueuedReader). It reads the goqite queue a
// receiver of kind reads ("jobs:" and the kind, as jobs/postgres names
// it), so a job stored under another queue name, which would never run,
// is not counted, and checks each body decodes to kind.
func (s *Store) Enqueued(ctx context.Context, kind string) ([]jobs.Message, error) {
	rows, err := s.db.QueryContext(ctx, `select id, body from goqite where queue = $1 order by created, id`, "jobs:"+kind)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jobs.Message
	for rows.Next() {
		var id string
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			return nil, err
		}
		m, err := jobs.Decode(body)
		if err != nil {
			return nil, fmt.Errorf("goqite message %s: %w", id, err)
		}
		if m.Kind != kind {
			return nil, fmt.Errorf("goqite message %s in the queue of %q is of kind %q", id, kind, m.Kind)
		}
		m.ID = id
		out = append(out, m)
	}
	return out, rows.Err()
}

// InTx is inTx, for tests of its retries and error mapping. fn's error
// is translated as the store's own statements' are (observe).
func (s *Store) InTx(ctx context.Context, name string, fn func(tx *sql.Tx) error) error {
	return s.inTx(ctx, name, func(tx *sql.Tx) error { return translate(name, fn(tx)) })
}

// DB is the store's database/sql handle on the primary.
func (s *Store) DB() *sql.DB { return s.db }

// SlowEvents makes every transaction that writes an event wait in pause
// between the insert and the commit, and, with noLock, insert events
// without the user's event lock.
func (s *Store) SlowEvents(pause func(), noLock bool) {
	s.test = testHooks{noEventLock: noLock, afterEvent: pause}
}

// Migrations are the store's migrations, files and Go, in order.
func Migrations() ([]sqlutil.Migration, error) { return migrations() }
