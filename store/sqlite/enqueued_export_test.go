package sqlite

import (
	"context"
	"fmt"

	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
)

// Enqueued lists the messages of kind waiting in goqite's table, without
// receiving them (storetest.EnqueuedReader). jobs.Queue has no read that
// leaves a message as it was (Receive takes it and counts an attempt),
// so it reads the table on the reader pool and picks the bodies of kind.
// The queue's own Stats must count as many of kind, which holds the
// bodies to the goqite queue that Receive reads: a job stored under
// another queue name would never run.
func (s *Store) Enqueued(ctx context.Context, kind string) ([]jobs.Message, error) {
	rows, err := s.reader.db.QueryContext(ctx, `SELECT id, body FROM goqite ORDER BY created, rowid`)
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
		if m.Kind == kind {
			m.ID = id
			out = append(out, m)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	st, err := s.Queue(jobsqlite.Options{}).Stats(ctx)
	if err != nil {
		return nil, err
	}
	if ks := st.Kinds[kind]; ks.Queued+ks.InFlight != len(out) {
		return nil, fmt.Errorf("goqite holds %d messages of kind %q, but the queue counts %+v", len(out), kind, ks)
	}
	return out, nil
}
