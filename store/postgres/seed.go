package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"onebox/store"
	"onebox/store/internal/sqlutil"
)

// seedColumns are the users columns SeedUsers copies, in CopyFrom's order.
var seedColumns = []string{"id", "handle", "handle_key", "display_name", "password_hash", "created_at", "updated_at"}

// SeedUsers inserts many users with one COPY in one transaction. It is a
// tooling helper, for the benchmark seeder and fixtures; the application
// creates users one at a time with CreateUser. It fails as a whole, with
// store.ErrConflict, if any ID or handle is taken.
//
// It runs on the pgx pool itself rather than database/sql: COPY is
// pgx's CopyFrom, ten times or more faster than row-by-row inserts.
func (s *Store) SeedUsers(ctx context.Context, users []store.CreateUserParams) error {
	return s.observe(ctx, "users_seed", "COPY users (id, handle, handle_key, display_name, password_hash, created_at, updated_at) FROM STDIN", func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"users"}, seedColumns,
				pgx.CopyFromSlice(len(users), func(i int) ([]any, error) {
					p := users[i]
					now := utc(p.Now)
					return []any{p.ID, p.Handle, sqlutil.HandleKey(p.Handle), p.DisplayName, p.PasswordHash, now, now}, nil
				}))
			return err
		})
	})
}
