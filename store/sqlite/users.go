package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"onebox/store"
	"onebox/store/internal/sqlutil"
)

// userColumns is what scanUser reads, in its order.
const userColumns = `id, handle, display_name, bio, coalesce(avatar_id, ''), created_at, updated_at, version`

const (
	insertUserSQL = `INSERT INTO users (id, handle, handle_key, display_name, password_hash, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)`
	userByIDSQL     = `SELECT ` + userColumns + ` FROM users WHERE id = ?`
	userByHandleSQL = `SELECT ` + userColumns + ` FROM users WHERE handle_key = ?`
	listUsersSQL    = `SELECT ` + userColumns + ` FROM users WHERE id > ? ORDER BY id LIMIT ?`
	credentialsSQL  = `SELECT id, password_hash FROM users WHERE handle_key = ?`
	// A NULL argument leaves its column alone; ?5 = 0 skips the version
	// check; ?6 = '' clears the avatar, and any other avatar must be a
	// ready photo of the user, checked in this same statement.
	updateUserSQL = `UPDATE users SET
	display_name = coalesce(?2, display_name),
	bio = coalesce(?3, bio),
	avatar_id = CASE WHEN ?6 IS NULL THEN avatar_id ELSE nullif(?6, '') END,
	updated_at = ?4,
	version = version + 1
WHERE id = ?1 AND (?5 = 0 OR version = ?5)
	AND (coalesce(?6, '') = '' OR EXISTS (
		SELECT 1 FROM photos WHERE id = ?6 AND owner_id = ?1 AND status = 'ready'))
RETURNING ` + userColumns
	// Why updateUserSQL matched no row: the user's version, and whether
	// the avatar asked for ('' for none) would do.
	updateCheckSQL = `SELECT version, ?2 = '' OR EXISTS (
	SELECT 1 FROM photos WHERE id = ?2 AND owner_id = users.id AND status = 'ready')
FROM users WHERE id = ?1`
	setPasswordSQL         = `UPDATE users SET password_hash = ? WHERE id = ?`
	revokeOtherSessionsSQL = `DELETE FROM sessions WHERE user_id = ? AND token_hash <> ?`
	deleteUserSQL          = `DELETE FROM users WHERE id = ?`
)

func scanUser(r scanner, u *store.User) error {
	return r.Scan(&u.ID, &u.Handle, &u.DisplayName, &u.Bio, &u.AvatarID,
		textTime{&u.CreatedAt}, textTime{&u.UpdatedAt}, &u.Version)
}

func insertUserArgs(p store.CreateUserParams) []any {
	now := formatTime(p.Now)
	return []any{p.ID, p.Handle, sqlutil.HandleKey(p.Handle), p.DisplayName, p.PasswordHash, now, now}
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

// User returns one user, or store.ErrNotFound. With store.MustBeFresh it
// sees every committed write; with store.MayBeStale, every write of this
// process and another process's within 100 ms.
func (s *Store) User(ctx context.Context, p store.UserParams) (store.User, error) {
	return readOne(ctx, s, p.Freshness, "users_by_id", userByIDSQL, scanUser, p.ID)
}

// UserByHandle returns the user with this handle, compared
// case-insensitively, or store.ErrNotFound. Freshness as for User.
func (s *Store) UserByHandle(ctx context.Context, p store.UserByHandleParams) (store.User, error) {
	return readOne(ctx, s, p.Freshness, "users_by_handle", userByHandleSQL, scanUser, sqlutil.HandleKey(p.Handle))
}

// ListUsers returns up to p.Limit users with ID > p.AfterID in ID order,
// which for UUIDv7 is creation order. store.ErrInvalid if p.Limit < 1.
func (s *Store) ListUsers(ctx context.Context, p store.ListUsersParams) ([]store.User, error) {
	if p.Limit < 1 {
		// SQLite reads a negative LIMIT as no limit at all.
		return nil, fmt.Errorf("sqlite users_list: limit %d: %w", p.Limit, store.ErrInvalid)
	}
	return queryAll(ctx, s, s.reader, "users_list", listUsersSQL, scanUser, p.AfterID, p.Limit)
}

// Credentials looks a user up by handle, case-insensitively, for a login.
// store.ErrNotFound for an unknown handle.
func (s *Store) Credentials(ctx context.Context, handle string) (store.Credentials, error) {
	var c store.Credentials
	err := s.readKey(ctx, store.MustBeFresh, "users_credentials", credentialsSQL, func(r scanner) error {
		return r.Scan(&c.UserID, &c.PasswordHash)
	}, sqlutil.HandleKey(handle))
	if err != nil {
		return store.Credentials{}, err
	}
	return c, nil
}

// UpdateUser applies the non-nil fields, bumps Version and UpdatedAt in
// one statement, and returns the new row. store.ErrNotFound if the user
// is gone; store.ErrVersionMismatch if p.IfVersion is set and differs;
// store.ErrInvalid if p.AvatarID names anything but a ready photo of the
// user ("" clears the avatar).
func (s *Store) UpdateUser(ctx context.Context, p store.UpdateUserParams) (store.User, error) {
	var u store.User
	err := s.run(ctx, s.writer, "users_update", updateUserSQL, func(st *sql.Stmt) error {
		row := st.QueryRowContext(ctx, p.ID, p.DisplayName, p.Bio, formatTime(p.Now), p.IfVersion, p.AvatarID)
		return scanUser(row, &u)
	})
	if errors.Is(err, store.ErrNotFound) && (p.IfVersion != 0 || sqlutil.AvatarOf(p) != "") {
		// Not only a missing user can match no row.
		err = s.whyNoUpdate(ctx, p)
	}
	if err != nil {
		return store.User{}, err
	}
	return u, nil
}

// whyNoUpdate tells why UpdateUser matched no row, with a second read;
// sqlutil.WhyNoUpdate says why no transaction is needed around the two.
func (s *Store) whyNoUpdate(ctx context.Context, p store.UpdateUserParams) error {
	avatar := sqlutil.AvatarOf(p)
	var (
		version  int64
		avatarOK bool
	)
	err := s.readKey(ctx, store.MustBeFresh, "users_update_check", updateCheckSQL, func(r scanner) error {
		return r.Scan(&version, &avatarOK)
	}, p.ID, avatar)
	if err != nil {
		return err
	}
	return sqlutil.WhyNoUpdate("sqlite", p, version, avatarOK)
}

// SetPassword replaces the hash and revokes every session of the user
// but p.KeepTokenHash, in one transaction. The password is not part of
// the profile, so Version and UpdatedAt stay as they are (and p.Now is
// unused). store.ErrNotFound if the user is gone.
func (s *Store) SetPassword(ctx context.Context, p store.SetPasswordParams) error {
	return s.inTx(ctx, "users_set_password", func(tx *sql.Tx) error {
		if err := s.txExecOne(ctx, tx, "users_set_password", setPasswordSQL, p.PasswordHash, p.UserID); err != nil {
			return err
		}
		_, err := s.txExec(ctx, tx, "sessions_revoke_others", revokeOtherSessionsSQL, p.UserID, p.KeepTokenHash)
		return err
	})
}

// DeleteUser removes the user, their events and, by the foreign keys'
// cascades, their sessions, photos and idempotency keys, in one
// transaction; there it also enqueues p.Cleanup with the media keys of
// every photo, when there are any. store.ErrNotFound if the user does
// not exist.
func (s *Store) DeleteUser(ctx context.Context, p store.DeleteUserParams) error {
	return s.inTx(ctx, "users_delete", func(tx *sql.Tx) error {
		var keys []string
		if p.Cleanup != nil {
			// Before the cascade takes the photos with the user.
			var err error
			if keys, err = s.ownerPhotoKeys(ctx, tx, p.ID); err != nil {
				return err
			}
		}
		if err := s.txExecOne(ctx, tx, "users_delete", deleteUserSQL, p.ID); err != nil {
			return err
		}
		// Events have no foreign key: a photo's outlive it, not its owner's.
		if _, err := s.txExec(ctx, tx, "events_delete_by_user", deleteUserEventsSQL, p.ID); err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		return s.sendTx(ctx, tx, p.Cleanup(keys))
	})
}
