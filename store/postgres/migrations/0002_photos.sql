-- Photos, the idempotency keys of their uploads, and the events the SSE
-- streams replay. users.avatar_id stays a plain column, not a foreign
-- key: DeletePhoto and DeleteUser clear it in their own transaction, and
-- UpdateUser checks it names a ready photo of the same user.

create table photos (
    id           text collate "C" not null primary key, -- UUIDv7: sorts by creation time
    owner_id     text collate "C" not null references users (id) on delete cascade,
    status       text not null check (status in ('processing', 'ready', 'rejected')),
    reason       text not null default '',
    width        integer not null default 0,
    height       integer not null default 0,
    original_key text not null,
    content_type text not null,
    size         bigint not null,
    variants     jsonb not null default '[]' check (jsonb_typeof(variants) = 'array'),
    created_at   timestamptz not null,
    updated_at   timestamptz not null
);

-- ListPhotos: one owner's photos, newest first, by keyset on id. It also
-- serves the owner_id foreign key, for the cascade from users.
create index photos_owner_id on photos (owner_id, id);

-- An upload's Idempotency-Key, per owner. The key goes with its photo:
-- once the photo is deleted, a retry with the same key uploads anew.
create table photo_idempotency (
    owner_id   text collate "C" not null references users (id) on delete cascade,
    key        text collate "C" not null,
    photo_id   text collate "C" not null references photos (id) on delete cascade,
    created_at timestamptz not null,
    primary key (owner_id, key)
);

-- The cascade from photos looks keys up by photo_id.
create index photo_idempotency_photo_id on photo_idempotency (photo_id);

-- What changed, for the SSE streams. An identity column never hands out
-- an id twice, even after the newest events are deleted. Ids are taken at
-- insert, not at commit: the store serializes each user's event inserts
-- on an advisory lock so that one user's ids still follow commit order.
-- No foreign keys: a photo's delete event outlives the photo; DeleteUser
-- deletes a user's events itself.
create table events (
    id         bigint generated always as identity primary key,
    user_id    text collate "C" not null,
    photo_id   text collate "C" not null,
    created_at timestamptz not null
);

-- Events and LastEventID read one user's events by id.
create index events_user_id on events (user_id, id);
