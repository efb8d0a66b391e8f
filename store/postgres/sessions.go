package postgres

import (
	"context"
	"time"

	"onebox/store"
	"onebox/store/internal/sqlutil"
)

const (
	// A new session's token is the primary's position now: its first
	// reads see everything committed before the login, the sign-up too.
	insertSessionSQL = `insert into sessions (token_hash, user_id, created_at, expires_at, read_lsn)
values ($1, $2, $3, $4, pg_current_wal_lsn())`
	sessionByHashSQL = `select token_hash, user_id, created_at, expires_at, read_lsn::text from sessions
where token_hash = $1 and expires_at > $2`
	deleteSessionSQL = `delete from sessions where token_hash = $1`
	userSessionsSQL  = `select token_hash from sessions where user_id = $1 order by token_hash`
	// pg_current_wal_lsn() is at or past the commit record of every
	// transaction that has committed: every write that returned before
	// the call. greatest keeps a token from moving back.
	markWrittenSQL = `update sessions set read_lsn = greatest(read_lsn, pg_current_wal_lsn())
where token_hash = $1 returning read_lsn::text`
)

// CreateSession stores a session, whose Token starts at the primary's
// position at its creation (sess.Token is ignored). store.ErrNotFound if the user is gone;
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
			return r.Scan(&sess.TokenHash, &sess.UserID, utcTime{&sess.CreatedAt}, utcTime{&sess.ExpiresAt}, &sess.Token)
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
	return queryAll(ctx, s, s.reader(store.MustBeFresh, ""), "sessions_by_user", userSessionsSQL, sqlutil.ScanValue[string], userID)
}

// MarkWritten records in the session the primary's WAL position now and
// returns it as the session's Token, in one statement; the token never
// moves back. store.ErrNotFound if the session is gone.
func (s *Store) MarkWritten(ctx context.Context, tokenHash string) (store.Token, error) {
	return readOne(ctx, s, onPrimary, "sessions_mark_written", markWrittenSQL, sqlutil.ScanValue[store.Token], tokenHash)
}
