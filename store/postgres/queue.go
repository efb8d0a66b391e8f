package postgres

import (
	"context"
	"database/sql"

	"onebox/jobs"
	jobpg "onebox/jobs/postgres"
)

// sendTx enqueues m in tx into goqite's table (jobs/postgres's SendTx),
// so it commits or rolls back with the rows written beside it. The query
// reported is a name, not SQL: jobs/postgres runs its own.
func (s *Store) sendTx(ctx context.Context, tx *sql.Tx, m jobs.Message) error {
	return s.observe(ctx, "jobs_send", "goqite.SendTx", func() error {
		return s.jobs.SendTx(ctx, tx, m, jobs.SendOptions{})
	})
}

// Queue returns the job queue kept in this store's database (migration
// 0003 creates its tables), on the store's pool, so the jobs that
// CreatePhoto, DeletePhoto and DeleteUser enqueue commit with their rows.
// It fails once the Store is closed.
func (s *Store) Queue(o jobpg.Options) *jobpg.Queue {
	return jobpg.New(s.db, o)
}
