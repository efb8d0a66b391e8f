-- The messages whose turn is not 0, a step after FairSchema. While a
-- queue has none (no key has had a message in it since it was last
-- empty of them), every turn is 0, and Send gives a message without a
-- key turn 0 with one seek here instead of the two lookups of its turn,
-- the second of which passes over every running message.
create index if not exists goqite_queue_ranked_idx on goqite (queue) where fair_rank <> 0;
