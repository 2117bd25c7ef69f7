-- A run whose compensation has begun is being undone: from then on no forward step of that run may
-- act (a zombie charge or reservation arriving late is refused, or given back), under the same row
-- lock the compensations take. And a customer's cancel is kept with the order, not only in the
-- workflow's memory, so a retry never revives an order its customer cancelled.
alter table orders
  add column undo_run integer check (undo_run >= 1),
  add column cancel_requested_at timestamptz;
