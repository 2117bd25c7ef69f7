-- Each saga run of an order has its own identity: the run number on the order. An operator's retry
-- starts run 2, 3, …; whatever a run does is keyed by its number (its charge, its notifications, its
-- event ids, the stock it holds), so a stray run (a reset, a replayed message, a run started by hand)
-- finds nothing of its own to undo and a retried run charges under a key of its own.
alter table orders
  add column run integer not null default 1 check (run >= 1),
  -- The run whose reservation took the order's stock; it holds it while stock_released_at is null.
  add column stock_run integer,
  -- What reserveInventory answered for the current run, so a retried attempt whose first try
  -- committed gets the same answer. The record the activity relies on lives with the order, not in
  -- event_outbox rows (a delivery queue that may be pruned).
  add column reservation jsonb,
  add constraint orders_stock_run_when_reserved check ((stock_run is null) = (stock_reserved_at is null));

update orders set stock_run = 1 where stock_reserved_at is not null;
update orders o set reservation = jsonb_build_object(
    'run', 1, 'outcome', 'RESERVED',
    'items', (select jsonb_agg(jsonb_build_object('sku', i.sku, 'qty', i.qty) order by i.sku)
                from order_items i where i.order_id = o.id))
  where o.stock_reserved_at is not null;
update orders o set reservation = jsonb_build_object(
    'run', 1, 'outcome', 'OUT_OF_STOCK',
    'unavailable', coalesce((select e.payload -> 'data' -> 'unavailable' from event_outbox e
                              where e.order_id = o.id and e.type = 'order.out_of_stock' limit 1), '[]'::jsonb))
  where o.status = 'OUT_OF_STOCK';

-- One payment intent per run. Existing intents belong to run 1, whose charge key is the order id.
alter table payments
  add column run integer not null default 1 check (run >= 1),
  add column charge_key text,
  -- Charge attempts that went to the gateway and whose answer is not known (yet): one taken before
  -- each call, given back when the gateway says it was not reached. While any is in doubt, money may
  -- have been taken and the intent stays on record for the compensation to void.
  add column attempts_in_doubt integer not null default 0 check (attempts_in_doubt >= 0);
update payments set attempts_in_doubt = 1 where status = 'CHARGING';
update payments set charge_key = order_id::text;
alter table payments
  alter column charge_key set not null,
  drop constraint payments_pkey,
  add primary key (order_id, run),
  add constraint payments_charge_key_key unique (charge_key);

-- One e-mail of each kind per run: a retried order that completes tells the customer again.
alter table notifications
  add column run integer not null default 1 check (run >= 1),
  drop constraint notifications_order_id_kind_key,
  add constraint notifications_order_run_kind_key unique (order_id, run, kind);

-- The highest run whose workflow the bridge has started (after Temporal accepted it). A replayed
-- order.placed (or order.retried) for a run already started is a duplicate, even once Temporal has
-- forgotten the run (history retention); a retried run not started yet is what reconcile looks for.
alter table orders add column started_run integer check (started_run >= 1);
update orders set started_run = 1 where status <> 'PENDING' or stock_reserved_at is not null;
