-- goqite's table, trigger and index as in maragu.dev/goqite v0.4.0
-- (schema_postgres.sql), made idempotent. A message of kind K lives in
-- the goqite queue "<name>:K". pgcrypto (for gen_random_bytes) is
-- created by whoever owns the database (the store's migrations), since an
-- extension belongs to the database, not to a schema.
create or replace function update_timestamp()
returns trigger as $$
begin
   new.updated = now();
   return new;
end;
$$ language plpgsql;

create table if not exists goqite (
  id text primary key default ('m_' || encode(gen_random_bytes(16), 'hex')),
  created timestamptz not null default now(),
  updated timestamptz not null default now(),
  queue text not null,
  body bytea not null,
  timeout timestamptz not null default now(),
  received integer not null default 0,
  priority integer not null default 0
);

drop trigger if exists goqite_updated_timestamp on goqite;
create trigger goqite_updated_timestamp
before update on goqite
for each row execute procedure update_timestamp();

create index if not exists goqite_queue_priority_created_idx on goqite (queue, priority desc, created);

-- The error of a message's last failed attempt, and the time Retry made
-- it visible again at. Only failing messages have a row.
create table if not exists jobs_errors (
  id text primary key references goqite (id) on delete cascade,
  last_error text not null,
  retry_at timestamptz not null
);

-- Messages that will not be retried, kept for operators (Dead, Redrive).
create table if not exists jobs_dead (
  id text primary key,
  queue text not null,
  kind text not null,
  body bytea not null,
  priority integer not null,
  last_error text not null,
  attempts integer not null,
  created timestamptz not null,
  died_at timestamptz not null
);

create index if not exists jobs_dead_queue_died_idx on jobs_dead (queue, died_at);
create index if not exists jobs_dead_queue_kind_idx on jobs_dead (queue, kind);
