-- Fair queueing (jobs.Message.FairKey), a step after Schema: each message
-- carries its key and its turn (rank) in its goqite queue, which Send
-- computes (see the package comment). Receive takes the lowest turns
-- first, so this index replaces goqite's (queue, priority desc, created);
-- lookups by queue (Stats) use it as they used that one. Only goqite's
-- own Receive, which onebox does not call, would now sort.
-- Idempotent.
alter table goqite add column if not exists fair_key text not null default '';
alter table goqite add column if not exists fair_rank bigint not null default 0;

create index if not exists goqite_queue_priority_rank_idx on goqite (queue, priority desc, fair_rank, created);
drop index if exists goqite_queue_priority_created_idx;

-- A key's last turn, for its next message. Jobs without a key take the
-- current turn and are not in it, so they cost no index entry here.
create index if not exists goqite_queue_key_rank_idx on goqite (queue, fair_key, fair_rank) where fair_key <> '';
