package sqlite

import (
	"context"
	"database/sql"
	"time"

	"onebox/store"
	"onebox/store/internal/sqlutil"
)

const (
	insertSessionSQL = `INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)`
	sessionByHashSQL = `SELECT token_hash, user_id, created_at, expires_at FROM sessions
WHERE token_hash = ? AND expires_at > ?`
	deleteSessionSQL = `DELETE FROM sessions WHERE token_hash = ?`
	// The user_id index of a WITHOUT ROWID table carries token_hash, so it
	// answers this alone, already in order.
	userSessionsSQL = `SELECT token_hash FROM sessions WHERE user_id = ? ORDER BY token_hash`
)

// CreateSession stores a session. store.ErrNotFound if the user is gone;
// store.ErrConflict if the token hash is taken.
func (s *Store) CreateSession(ctx context.Context, sess store.Session) error {
	return s.run(ctx, s.writer, "sessions_insert", insertSessionSQL, func(st *sql.Stmt) error {
		_, err := st.ExecContext(ctx, sess.TokenHash, sess.UserID, formatTime(sess.CreatedAt), formatTime(sess.ExpiresAt))
		return err
	})
}

// Session returns the session for a token hash, or store.ErrNotFound when
// there is none or it expires at or before now. It reads the key reader,
// which sees every committed revocation.
func (s *Store) Session(ctx context.Context, tokenHash string, now time.Time) (store.Session, error) {
	var sess store.Session
	err := s.readKey(ctx, store.MustBeFresh, "sessions_by_hash", sessionByHashSQL, func(r scanner) error {
		return r.Scan(&sess.TokenHash, &sess.UserID, textTime{&sess.CreatedAt}, textTime{&sess.ExpiresAt})
	}, tokenHash, formatTime(now))
	if err != nil {
		return store.Session{}, err
	}
	return sess, nil
}

// DeleteSession revokes one session; a missing one is not an error.
func (s *Store) DeleteSession(ctx context.Context, tokenHash string) error {
	return s.run(ctx, s.writer, "sessions_delete", deleteSessionSQL, func(st *sql.Stmt) error {
		_, err := st.ExecContext(ctx, tokenHash)
		return err
	})
}

// UserSessions lists the token hashes of a user's sessions, expired ones
// included, in token-hash order. An unknown user has none.
func (s *Store) UserSessions(ctx context.Context, userID string) ([]string, error) {
	return queryAll(ctx, s, s.reader, "sessions_by_user", userSessionsSQL, sqlutil.ScanValue[string], userID)
}

// MarkWritten returns "": SQLite keeps one copy, which every read sees
// whole, so there is no position to wait for and nothing is written.
func (s *Store) MarkWritten(context.Context, string) (store.Token, error) {
	return "", nil
}
