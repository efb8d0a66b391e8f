package sqlite

import (
	"context"
	"fmt"
	"io/fs"

	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
)

// Pragma reads one pragma through the writer, the reader pool or the key
// reader, to check what the DSN really applied.
func (s *Store) Pragma(ctx context.Context, pool, name string) (string, error) {
	var v string
	switch pool {
	case "writer":
		return v, s.writer.db.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	case "reader":
		return v, s.reader.db.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	case "keys":
		var a any
		err := s.keys.read(ctx, false, "PRAGMA "+name, nil, func(r scanner) error { return r.Scan(&a) })
		return fmt.Sprint(a), err
	}
	return "", fmt.Errorf("no pool %q", pool)
}

// MigrationCount is how many migrations there are, files and Go.
func MigrationCount() (int, error) {
	ms, err := migrations()
	return len(ms), err
}

// LoadMigrations checks the migrations of fsys merged with Go-supplied
// ones, given by version as name and SQL, and returns their
// "NNNN_name" in order.
func LoadMigrations(fsys fs.FS, goms map[int][2]string) ([]string, error) {
	var in []migration
	for v, m := range goms {
		in = append(in, migration{version: v, name: m[0], sql: m[1]})
	}
	ms, err := loadMigrations(fsys, in)
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%04d_%s", m.version, m.name))
	}
	return out, err
}

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
