package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"onebox/store"
)

// SeedUsers inserts many users in one transaction. It is a tooling
// helper, for the benchmark seeder and fixtures; the application creates
// users one at a time with CreateUser. It fails as a whole, with
// store.ErrConflict, if any ID or handle is taken.
func (s *Store) SeedUsers(ctx context.Context, users []store.CreateUserParams) error {
	return s.inTxAlone(ctx, "users_seed", func(tx *sql.Tx) error {
		// One event for the batch: per-row events would drown the app's.
		return s.observeTx(ctx, tx, "users_seed", insertUserSQL, func() error {
			st, err := tx.PrepareContext(ctx, insertUserSQL)
			if err != nil {
				return err
			}
			defer st.Close()
			for _, p := range users {
				if _, err := st.ExecContext(ctx, insertUserArgs(p)...); err != nil {
					return fmt.Errorf("user %s: %w", p.ID, err)
				}
			}
			return nil
		})
	})
}
