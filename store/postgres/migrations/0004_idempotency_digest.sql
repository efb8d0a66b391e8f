-- An upload's Idempotency-Key remembers what its request sent, so a key
-- reused with another file is refused instead of answered with the first
-- photo, and when it is forgotten, so the table does not grow forever.
--
-- digest: "sha256:" and the hex SHA-256 of the uploaded file, compared
-- only for equality. '' matches any digest.
alter table photo_idempotency add column digest text not null default '';

-- Keys taken before this version expire a day after they were taken
-- (the default ONEBOX_IDEMPOTENCY_TTL).
alter table photo_idempotency add column expires_at timestamptz;
update photo_idempotency set expires_at = created_at + interval '1 day';
alter table photo_idempotency alter column expires_at set not null;

-- PruneIdempotencyKeys reads the expired keys, oldest first.
create index photo_idempotency_expires_at on photo_idempotency (expires_at);
