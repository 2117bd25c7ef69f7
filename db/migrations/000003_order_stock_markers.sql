-- Whether an order holds stock is a fact about the order, kept on its row: set in the transaction
-- that takes the stock, and cleared-by-marking in the one that gives it back. The compensation used
-- to infer it from event_outbox rows, which are a delivery queue and may be pruned one day.
alter table orders
  add column stock_reserved_at timestamptz,
  add column stock_released_at timestamptz,
  add constraint orders_stock_release_after_reserve
    check (stock_released_at is null or stock_reserved_at is not null);

-- Existing orders: the outbox still has the history.
update orders o set stock_reserved_at = e.created_at
  from event_outbox e where e.order_id = o.id and e.type = 'inventory.reserved';
update orders o set stock_released_at = e.created_at
  from event_outbox e where e.order_id = o.id and e.type = 'inventory.released';
