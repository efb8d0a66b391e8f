package sqlite

import (
	"context"
	"database/sql"

	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
)

// Queue returns the job queue kept in this store's database (migration
// 0003 creates its tables), over the store's own pools: the process
// keeps one writer connection, and the jobs that CreatePhoto,
// DeletePhoto and DeleteUser enqueue commit with their rows. Call it once
// and keep the queue: it keeps statements prepared on the writer. The
// queue shares the pools, so it fails once the Store is closed.
func (s *Store) Queue(o jobsqlite.Options) *jobsqlite.Queue {
	// The queue's transactions are the store's: they queue with its
	// writes and share their COMMIT.
	o.InTx, o.Exec = s.inTx, s.execWrite
	return jobsqlite.New(s.writer.db, s.reader.db, o)
}

// sendTx enqueues m in tx into goqite's table (jobs/sqlite's SendTx), so
// it commits or rolls back with the rows written beside it. The query
// reported is a name, not SQL: jobs/sqlite runs its own.
func (s *Store) sendTx(ctx context.Context, tx *sql.Tx, m jobs.Message) error {
	return s.observeTx(ctx, tx, "jobs_send", "goqite.SendTx", func() error {
		return s.jobs.SendTx(ctx, tx, m, jobs.SendOptions{})
	})
}
