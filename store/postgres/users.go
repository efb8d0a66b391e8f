package postgres

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
	insertUserSQL = `insert into users (id, handle, handle_key, display_name, password_hash, created_at, updated_at)
values ($1, $2, $3, $4, $5, $6, $6)`
	userByIDSQL     = `select ` + userColumns + ` from users where id = $1`
	userByHandleSQL = `select ` + userColumns + ` from users where handle_key = $1`
	listUsersSQL    = `select ` + userColumns + ` from users where id > $1 order by id limit $2`
	credentialsSQL  = `select id, password_hash from users where handle_key = $1`
	// A null argument leaves its column alone; $5 = 0 skips the version
	// check; $6 = '' clears the avatar, and any other avatar must be a
	// ready photo of the user, checked in this same statement.
	updateUserSQL = `update users set
	display_name = coalesce($2::text, display_name),
	bio = coalesce($3::text, bio),
	avatar_id = case when $6::text is null then avatar_id else nullif($6::text, '') end,
	updated_at = $4,
	version = version + 1
where id = $1 and ($5::bigint = 0 or version = $5::bigint)
	and (coalesce($6::text, '') = '' or exists (
		select 1 from photos where id = $6::text and owner_id = $1 and status = 'ready'))
returning ` + userColumns
	// Why updateUserSQL matched no row: the user's version, and whether
	// the avatar asked for ('' for none) would do.
	updateCheckSQL = `select version, $2::text = '' or exists (
	select 1 from photos where id = $2::text and owner_id = users.id and status = 'ready')
from users where id = $1`
	setPasswordSQL         = `update users set password_hash = $1 where id = $2`
	revokeOtherSessionsSQL = `delete from sessions where user_id = $1 and token_hash <> $2`
	deleteUserSQL          = `delete from users where id = $1`
	// A new photo's foreign key takes a KEY SHARE lock on its owner, which
	// this waits for and then keeps out until the delete commits.
	lockUserSQL = `select 1 from users where id = $1 for update`
)

func scanUser(r scanner, u *store.User) error {
	return r.Scan(&u.ID, &u.Handle, &u.DisplayName, &u.Bio, &u.AvatarID,
		utcTime{&u.CreatedAt}, utcTime{&u.UpdatedAt}, &u.Version)
}

// CreateUser inserts a user with Version 1. It returns store.ErrConflict
// if the handle (compared case-insensitively) or the ID is taken.
func (s *Store) CreateUser(ctx context.Context, p store.CreateUserParams) (store.User, error) {
	err := s.do(ctx, "users_insert", insertUserSQL, func() error {
		_, err := s.db.ExecContext(ctx, insertUserSQL, p.ID, p.Handle, sqlutil.HandleKey(p.Handle), p.DisplayName, p.PasswordHash, utc(p.Now))
		return err
	})
	if err != nil {
		return store.User{}, err
	}
	now := utc(p.Now) // as a read-back would be
	return store.User{
		ID:          p.ID,
		Handle:      p.Handle,
		DisplayName: p.DisplayName,
		CreatedAt:   now,
		UpdatedAt:   now,
		Version:     1,
	}, nil
}

// User returns one user, or store.ErrNotFound.
func (s *Store) User(ctx context.Context, p store.UserParams) (store.User, error) {
	return readOne(ctx, s, s.reader(p.Freshness, p.AtLeast), "users_by_id", userByIDSQL, scanUser, p.ID)
}

// UserByHandle returns the user with this handle, compared
// case-insensitively, or store.ErrNotFound.
func (s *Store) UserByHandle(ctx context.Context, p store.UserByHandleParams) (store.User, error) {
	return readOne(ctx, s, s.reader(p.Freshness, ""), "users_by_handle", userByHandleSQL, scanUser, sqlutil.HandleKey(p.Handle))
}

// ListUsers returns up to p.Limit users with ID > p.AfterID in ID order,
// which for UUIDv7 is creation order. store.ErrInvalid if p.Limit < 1.
func (s *Store) ListUsers(ctx context.Context, p store.ListUsersParams) ([]store.User, error) {
	if p.Limit < 1 {
		return nil, fmt.Errorf("postgres users_list: limit %d: %w", p.Limit, store.ErrInvalid)
	}
	return queryAll(ctx, s, s.reader(p.Freshness, ""), "users_list", listUsersSQL, scanUser, p.AfterID, p.Limit)
}

// Credentials looks a user up by handle, case-insensitively, for a login,
// on the primary. store.ErrNotFound for an unknown handle.
func (s *Store) Credentials(ctx context.Context, handle string) (store.Credentials, error) {
	return readOne(ctx, s, s.reader(store.MustBeFresh, ""), "users_credentials", credentialsSQL,
		func(r scanner, c *store.Credentials) error { return r.Scan(&c.UserID, &c.PasswordHash) },
		sqlutil.HandleKey(handle))
}

// UpdateUser applies the non-nil fields, bumps Version and UpdatedAt in
// one statement, and returns the new row. store.ErrNotFound if the user
// is gone; store.ErrVersionMismatch if p.IfVersion is set and differs;
// store.ErrInvalid if p.AvatarID names anything but a ready photo of the
// user ("" clears the avatar).
func (s *Store) UpdateUser(ctx context.Context, p store.UpdateUserParams) (store.User, error) {
	var u store.User
	err := s.do(ctx, "users_update", updateUserSQL, func() error {
		row := s.db.QueryRowContext(ctx, updateUserSQL, p.ID, p.DisplayName, p.Bio, utc(p.Now), p.IfVersion, p.AvatarID)
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

// whyNoUpdate tells why UpdateUser matched no row, with a second read on
// the primary; sqlutil.WhyNoUpdate says why no transaction is needed
// around the two.
func (s *Store) whyNoUpdate(ctx context.Context, p store.UpdateUserParams) error {
	avatar := sqlutil.AvatarOf(p)
	type check struct {
		version  int64
		avatarOK bool
	}
	c, err := readOne(ctx, s, s.reader(store.MustBeFresh, ""), "users_update_check", updateCheckSQL,
		func(r scanner, c *check) error { return r.Scan(&c.version, &c.avatarOK) }, p.ID, avatar)
	if err != nil {
		return err
	}
	return sqlutil.WhyNoUpdate("postgres", p, c.version, c.avatarOK)
}

// SetPassword replaces the hash and revokes every session of the user
// but p.KeepTokenHash, in one transaction. Version and UpdatedAt stay as
// they are. store.ErrNotFound if the user is gone.
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
		// First, so the photos read next are all the user will have had.
		err := s.observe(ctx, "users_lock", lockUserSQL, func() error {
			var one int
			return tx.QueryRowContext(ctx, lockUserSQL, p.ID).Scan(&one)
		})
		if err != nil {
			return err
		}
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
