-- goqite's table, trigger and index as in maragu.dev/goqite v0.4.0
-- (schema_sqlite.sql), made idempotent. A message of kind K lives in the
-- goqite queue "<name>:K".
create table if not exists goqite (
  id text primary key default ('m_' || lower(hex(randomblob(16)))),
  created text not null default (strftime('%Y-%m-%dT%H:%M:%fZ')),
  updated text not null default (strftime('%Y-%m-%dT%H:%M:%fZ')),
  queue text not null,
  body blob not null,
  timeout text not null default (strftime('%Y-%m-%dT%H:%M:%fZ')),
  received integer not null default 0,
  priority integer not null default 0
) strict;

create trigger if not exists goqite_updated_timestamp after update on goqite begin
  update goqite set updated = strftime('%Y-%m-%dT%H:%M:%fZ') where id = old.id;
end;

create index if not exists goqite_queue_priority_created_idx on goqite (queue, priority desc, created);

-- The error of a message's last failed attempt, and the time Retry made
-- it visible again at: a message whose timeout is still retry_at waits
-- for its retry rather than runs. Only failing messages have a row.
create table if not exists jobs_errors (
  id text primary key,
  last_error text not null,
  retry_at text not null
) strict, without rowid;

-- Acked or dead-lettered messages take their error with them, whichever
-- API deleted them.
create trigger if not exists jobs_errors_gone after delete on goqite begin
  delete from jobs_errors where id = old.id;
end;

-- Messages that will not be retried, kept for operators (Dead, Redrive).
create table if not exists jobs_dead (
  id text primary key,
  queue text not null,
  kind text not null,
  body blob not null,
  priority integer not null,
  last_error text not null,
  attempts integer not null,
  created text not null,
  died_at text not null
) strict;

create index if not exists jobs_dead_queue_died_idx on jobs_dead (queue, died_at);
create index if not exists jobs_dead_queue_kind_idx on jobs_dead (queue, kind);
