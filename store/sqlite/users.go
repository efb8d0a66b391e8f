package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"onebox/store"
)

// userColumns is what scanUser reads, in its order.
const userColumns = `id, handle, display_name, bio, coalesce(avatar_id, ''), created_at, updated_at, version`

const (
	insertUserSQL = `INSERT INTO users (id, handle, handle_key, display_name, password_hash, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)`
	userByIDSQL    = `SELECT ` + userColumns + ` FROM users WHERE id = ?`
	userExistsSQL  = `SELECT 1 FROM users WHERE id = ?`
	listUsersSQL   = `SELECT ` + userColumns + ` FROM users WHERE id > ? ORDER BY id LIMIT ?`
	credentialsSQL = `SELECT id, password_hash FROM users WHERE handle_key = ?`
	// A NULL argument leaves its column alone; ?5 = 0 skips the version check.
	updateUserSQL = `UPDATE users SET
	display_name = coalesce(?2, display_name),
	bio = coalesce(?3, bio),
	updated_at = ?4,
	version = version + 1
WHERE id = ?1 AND (?5 = 0 OR version = ?5)
RETURNING ` + userColumns
	setPasswordSQL         = `UPDATE users SET password_hash = ? WHERE id = ?`
	revokeOtherSessionsSQL = `DELETE FROM sessions WHERE user_id = ? AND token_hash <> ?`
	deleteUserSQL          = `DELETE FROM users WHERE id = ?`
)

func scanUser(r scanner, u *store.User) error {
	return r.Scan(&u.ID, &u.Handle, &u.DisplayName, &u.Bio, &u.AvatarID,
		textTime{&u.CreatedAt}, textTime{&u.UpdatedAt}, &u.Version)
}

// handleKey is the unique form of a handle. It is computed here rather
// than with SQL lower(), which folds ASCII only.
func handleKey(handle string) string {
	return strings.ToLower(handle)
}

func insertUserArgs(p store.CreateUserParams) []any {
	now := formatTime(p.Now)
	return []any{p.ID, p.Handle, handleKey(p.Handle), p.DisplayName, p.PasswordHash, now, now}
}

// CreateUser inserts a user with Version 1. It returns store.ErrConflict
// if the handle (compared case-insensitively) or the ID is taken.
func (s *Store) CreateUser(ctx context.Context, p store.CreateUserParams) (store.User, error) {
	err := s.run(ctx, s.writer, "users_insert", insertUserSQL, func(st *sql.Stmt) error {
		_, err := st.ExecContext(ctx, insertUserArgs(p)...)
		return err
	})
	if err != nil {
		return store.User{}, err
	}
	now := p.Now.UTC() // also drops the monotonic reading, as a read-back would
	return store.User{
		ID:          p.ID,
		Handle:      p.Handle,
		DisplayName: p.DisplayName,
		CreatedAt:   now,
		UpdatedAt:   now,
		Version:     1,
	}, nil
}

// User returns one user, or store.ErrNotFound. Both freshness levels read
// the reader pool, which sees every committed write.
func (s *Store) User(ctx context.Context, p store.UserParams) (store.User, error) {
	var u store.User
	err := s.run(ctx, s.reader, "users_by_id", userByIDSQL, func(st *sql.Stmt) error {
		return scanUser(st.QueryRowContext(ctx, p.ID), &u)
	})
	if err != nil {
		return store.User{}, err
	}
	return u, nil
}

// ListUsers returns up to p.Limit users with ID > p.AfterID in ID order,
// which for UUIDv7 is creation order. store.ErrInvalid if p.Limit < 1.
func (s *Store) ListUsers(ctx context.Context, p store.ListUsersParams) ([]store.User, error) {
	if p.Limit < 1 {
		// SQLite reads a negative LIMIT as no limit at all.
		return nil, fmt.Errorf("sqlite users_list: limit %d: %w", p.Limit, store.ErrInvalid)
	}
	var users []store.User
	err := s.run(ctx, s.reader, "users_list", listUsersSQL, func(st *sql.Stmt) error {
		rows, err := st.QueryContext(ctx, p.AfterID, p.Limit)
		if err != nil {
			return err
		}
		users, err = collect(rows, scanUser)
		return err
	})
	if err != nil {
		return nil, err
	}
	return users, nil
}

// Credentials looks a user up by handle, case-insensitively, for a login.
// store.ErrNotFound for an unknown handle.
func (s *Store) Credentials(ctx context.Context, handle string) (store.Credentials, error) {
	var c store.Credentials
	err := s.run(ctx, s.reader, "users_credentials", credentialsSQL, func(st *sql.Stmt) error {
		return st.QueryRowContext(ctx, handleKey(handle)).Scan(&c.UserID, &c.PasswordHash)
	})
	if err != nil {
		return store.Credentials{}, err
	}
	return c, nil
}

// UpdateUser applies the non-nil fields, bumps Version and UpdatedAt in
// one statement, and returns the new row. store.ErrNotFound if the user
// is gone; store.ErrVersionMismatch if p.IfVersion is set and differs.
func (s *Store) UpdateUser(ctx context.Context, p store.UpdateUserParams) (store.User, error) {
	var u store.User
	err := s.run(ctx, s.writer, "users_update", updateUserSQL, func(st *sql.Stmt) error {
		row := st.QueryRowContext(ctx, p.ID, p.DisplayName, p.Bio, formatTime(p.Now), p.IfVersion)
		return scanUser(row, &u)
	})
	if errors.Is(err, store.ErrNotFound) && p.IfVersion != 0 {
		// No row matched: a missing user or a stale version. This second
		// read needs no transaction around the update: IDs are never
		// reused, so a user that exists now existed then, at another
		// version; one deleted since is not found either way.
		err = s.run(ctx, s.reader, "users_exists", userExistsSQL, func(st *sql.Stmt) error {
			var one int
			return st.QueryRowContext(ctx, p.ID).Scan(&one)
		})
		if err == nil {
			err = fmt.Errorf("sqlite users_update: version %d: %w", p.IfVersion, store.ErrVersionMismatch)
		}
	}
	if err != nil {
		return store.User{}, err
	}
	return u, nil
}

// SetPassword replaces the hash and revokes every session of the user
// but p.KeepTokenHash, in one transaction. The password is not part of
// the profile, so Version and UpdatedAt stay as they are (and p.Now is
// unused). store.ErrNotFound if the user is gone.
func (s *Store) SetPassword(ctx context.Context, p store.SetPasswordParams) error {
	return s.inTx(ctx, "users_set_password", func(tx *sql.Tx) error {
		err := s.observe(ctx, "users_set_password", setPasswordSQL, func() error {
			res, err := tx.ExecContext(ctx, setPasswordSQL, p.PasswordHash, p.UserID)
			if err != nil {
				return err
			}
			return affectedOne(res)
		})
		if err != nil {
			return err
		}
		return s.observe(ctx, "sessions_revoke_others", revokeOtherSessionsSQL, func() error {
			_, err := tx.ExecContext(ctx, revokeOtherSessionsSQL, p.UserID, p.KeepTokenHash)
			return err
		})
	})
}

// DeleteUser removes the user; the foreign key cascades to their
// sessions. store.ErrNotFound if the user does not exist.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	return s.run(ctx, s.writer, "users_delete", deleteUserSQL, func(st *sql.Stmt) error {
		res, err := st.ExecContext(ctx, id)
		if err != nil {
			return err
		}
		return affectedOne(res)
	})
}
