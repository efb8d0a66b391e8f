-- Users and their login sessions. Times are timestamptz (microseconds,
-- UTC in and out); IDs are UUIDv7 text minted by onebox, in the "C"
-- collation so text order is byte order, as keyset paging expects.
--
-- pgcrypto gives goqite's table (version 3) gen_random_bytes. An
-- extension belongs to the database, not to a schema: where it exists
-- already, in any schema, this does nothing.
create extension if not exists pgcrypto;

create table users (
    id            text collate "C" not null primary key, -- UUIDv7: sorts by creation time
    handle        text not null,
    handle_key    text collate "C" not null unique,     -- lower-cased handle
    display_name  text not null,
    bio           text not null default '',
    avatar_id     text collate "C",                     -- null when no avatar is set
    password_hash text not null,
    created_at    timestamptz not null,
    updated_at    timestamptz not null,
    version       bigint not null default 1
);

-- read_lsn is the session's consistency token (store.Token): the
-- primary's WAL position at or after its latest write (MarkWritten).
create table sessions (
    token_hash text collate "C" not null primary key,
    user_id    text collate "C" not null references users (id) on delete cascade,
    created_at timestamptz not null,
    expires_at timestamptz not null,
    read_lsn   pg_lsn not null default '0/0'
);

-- Carries token_hash, so UserSessions reads the index alone, in order.
create index sessions_user_id on sessions (user_id, token_hash);
