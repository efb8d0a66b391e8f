-- Photos, the idempotency keys of their uploads, and the events the SSE
-- streams replay. users.avatar_id stays a plain column, not a foreign
-- key: DeletePhoto and DeleteUser clear it in their own transaction, and
-- UpdateUser checks it names a ready photo of the same user.

-- Rows carry a JSON list of variants (about a kilobyte), too large for
-- WITHOUT ROWID to pay off.
CREATE TABLE photos (
    id           TEXT NOT NULL PRIMARY KEY, -- UUIDv7: sorts by creation time
    owner_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status       TEXT NOT NULL CHECK (status IN ('processing', 'ready', 'rejected')),
    reason       TEXT NOT NULL DEFAULT '',
    width        INTEGER NOT NULL DEFAULT 0,
    height       INTEGER NOT NULL DEFAULT 0,
    original_key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    variants     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(variants)), -- JSON array of variants
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
) STRICT;

-- ListPhotos: one owner's photos, newest first, by keyset on id. It also
-- serves the owner_id foreign key, for the cascade from users.
CREATE INDEX photos_owner_id ON photos (owner_id, id);

-- An upload's Idempotency-Key, per owner. The key goes with its photo:
-- once the photo is deleted, a retry with the same key uploads anew
-- rather than answering with a photo that no longer exists.
CREATE TABLE photo_idempotency (
    owner_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    photo_id   TEXT NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (owner_id, key)
) STRICT, WITHOUT ROWID;

-- The cascade from photos looks keys up by photo_id.
CREATE INDEX photo_idempotency_photo_id ON photo_idempotency (photo_id);

-- What changed, for the SSE streams. AUTOINCREMENT: an id is never
-- reused, even after the newest events are deleted, so a client resuming
-- after an id cannot miss a later event that took it again. No foreign
-- keys: a photo's delete event outlives the photo; DeleteUser deletes a
-- user's events itself.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    photo_id   TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

-- Events and LastEventID read one user's events by id.
CREATE INDEX events_user_id ON events (user_id, id);
