package postgres

import (
	"context"
	"time"

	"onebox/store"
)

const (
	insertSessionSQL = `insert into sessions (token_hash, user_id, created_at, expires_at) values ($1, $2, $3, $4)`
	sessionByHashSQL = `select token_hash, user_id, created_at, expires_at from sessions
where token_hash = $1 and expires_at > $2`
	deleteSessionSQL = `delete from sessions where token_hash = $1`
	userSessionsSQL  = `select token_hash from sessions where user_id = $1 order by token_hash`
)

// CreateSession stores a session. store.ErrNotFound if the user is gone;
// store.ErrConflict if the token hash is taken.
func (s *Store) CreateSession(ctx context.Context, sess store.Session) error {
	return s.do(ctx, "sessions_insert", insertSessionSQL, func() error {
		_, err := s.db.ExecContext(ctx, insertSessionSQL, sess.TokenHash, sess.UserID, utc(sess.CreatedAt), utc(sess.ExpiresAt))
		return err
	})
}

// Session returns the session for a token hash, or store.ErrNotFound when
// there is none or it expires at or before now. It reads the primary,
// which sees every committed revocation.
func (s *Store) Session(ctx context.Context, tokenHash string, now time.Time) (store.Session, error) {
	return readOne(ctx, s, s.reader(store.MustBeFresh, ""), "sessions_by_hash", sessionByHashSQL,
		func(r scanner, sess *store.Session) error {
			return r.Scan(&sess.TokenHash, &sess.UserID, utcTime{&sess.CreatedAt}, utcTime{&sess.ExpiresAt})
		}, tokenHash, utc(now))
}

// DeleteSession revokes one session; a missing one is not an error.
func (s *Store) DeleteSession(ctx context.Context, tokenHash string) error {
	return s.do(ctx, "sessions_delete", deleteSessionSQL, func() error {
		_, err := s.db.ExecContext(ctx, deleteSessionSQL, tokenHash)
		return err
	})
}

// UserSessions lists the token hashes of a user's sessions, expired ones
// included, in token-hash order, from the primary. An unknown user has
// none.
func (s *Store) UserSessions(ctx context.Context, userID string) ([]string, error) {
	return queryAll(ctx, s, s.reader(store.MustBeFresh, ""), "sessions_by_user", userSessionsSQL, scanValue[string], userID)
}
