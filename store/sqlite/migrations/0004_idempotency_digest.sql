-- An upload's Idempotency-Key remembers what its request sent, so a key
-- reused with another file is refused instead of answered with the first
-- photo, and when it is forgotten, so the table does not grow forever.
--
-- digest: "sha256:" and the hex SHA-256 of the uploaded file, compared
-- only for equality. Keys taken before this version have none (''): they
-- match any digest, as every key did before.
ALTER TABLE photo_idempotency ADD COLUMN digest TEXT NOT NULL DEFAULT '';

-- expires_at: formatTime text like created_at, so text order is time
-- order. Keys taken before this version expire a day after they were
-- taken (the default ONEBOX_IDEMPOTENCY_TTL); the fraction and zone are
-- copied, as strftime keeps only whole seconds.
ALTER TABLE photo_idempotency ADD COLUMN expires_at TEXT NOT NULL DEFAULT '';
UPDATE photo_idempotency
SET expires_at = strftime('%Y-%m-%dT%H:%M:%S', created_at, '+1 day') || substr(created_at, 20);

-- PruneIdempotencyKeys reads the expired keys, oldest first.
CREATE INDEX photo_idempotency_expires_at ON photo_idempotency (expires_at);
