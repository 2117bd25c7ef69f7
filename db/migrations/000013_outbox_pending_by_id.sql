-- The publisher claims pending rows in id order (db/outbox.ts CLAIM_DUE_EVENTS). The partial index
-- on (available_at, id) cannot give that order, so the planner weighed it against a walk of the
-- primary key that filters every row, the published ones too; with statistics taken while a backlog
-- was pending it chose the walk: 350 ms per claim over 107 000 rows, once per NOTIFY, during a
-- 100 000-order drain. In id order and holding only the pending rows, this index makes a claim read
-- a handful of entries whatever the statistics say. Built inside the migration's transaction, it holds
-- inserts into event_outbox (so order placement) for the time one pass over the table takes.
create index event_outbox_pending_id_idx on event_outbox (id) where status = 'PENDING';
drop index event_outbox_pending_idx;
