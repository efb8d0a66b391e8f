-- Users and their login sessions. Times are fixed-width RFC 3339 UTC text
-- ("2006-01-02T15:04:05.000000000Z"), so text order is time order.

CREATE TABLE users (
    id            TEXT NOT NULL PRIMARY KEY, -- UUIDv7: sorts by creation time
    handle        TEXT NOT NULL,
    handle_key    TEXT NOT NULL UNIQUE,      -- lower-cased handle
    display_name  TEXT NOT NULL,
    bio           TEXT NOT NULL DEFAULT '',
    avatar_id     TEXT,                      -- NULL when no avatar is set
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    version       INTEGER NOT NULL DEFAULT 1
) STRICT;

-- Rows are small, so WITHOUT ROWID keeps each in the primary key's b-tree,
-- and the user_id index then covers UserSessions (it carries token_hash).
CREATE TABLE sessions (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX sessions_user_id ON sessions (user_id);
