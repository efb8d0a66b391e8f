package postgres

import (
	"context"
	"database/sql"

	"onebox/jobs"
)

// sendTx enqueues m in tx with goqite's own SendTx (jobs/postgres), so it
// commits or rolls back with the rows written beside it. The query
// reported is a name, not SQL: goqite runs its own.
func (s *Store) sendTx(ctx context.Context, tx *sql.Tx, m jobs.Message) error {
	return s.observe(ctx, "jobs_send", "goqite.SendTx", func() error {
		return s.jobs.SendTx(ctx, tx, m, jobs.SendOptions{})
	})
}
