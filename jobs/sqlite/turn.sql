-- A step after RankedSchema: the work Send and Receive did in statements
-- and row rewrites of their own moves into the statements they run.
--
-- contract: goqite's trigger goqite_updated_timestamp, which after every
-- UPDATE of a message rewrote its whole row (its body with it) a second
-- time, to set updated. onebox reads updated nowhere, and this package's
-- UPDATEs now set it themselves; the release before this one, during
-- the seconds of a hand-over, leaves it as it was.
drop trigger if exists goqite_updated_timestamp;

-- A message inserted without a key takes the current turn: that of the
-- message Receive would take next (the first visible one in its order),
-- or 0 while no message of its queue has a turn other than 0 (one seek
-- in RankedSchema's index; then every turn is 0, the next message's too,
-- and the row is not written again). This trigger gives it inside the
-- insert, where Send ran a statement of its own for it; Send still sets
-- a keyed message's key and turn after the insert (turnSQL).
create trigger if not exists goqite_turn after insert on goqite
when exists (select 1 from goqite indexed by goqite_queue_ranked_idx where queue = new.queue and fair_rank <> 0)
begin
  update goqite set fair_rank = coalesce((
    select fair_rank from goqite
    where queue = new.queue and timeout <= strftime('%Y-%m-%dT%H:%M:%fZ') and rowid <> new.rowid
    order by priority desc, fair_rank, created limit 1), 0)
  where rowid = new.rowid;
end;
