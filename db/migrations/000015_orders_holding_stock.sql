-- Orders that hold stock and have not completed: in flight (RESERVED, PAID: as many as run at once)
-- or done with it but not given back (an order that ended, or whose run was giving back, when its
-- compensation was stopped). The bridge counts the second kind at every scrape (db/orders.ts
-- heldStockStats) to raise AcmeOrdersHoldingStock; without this index that count would read every
-- ended order. Built inside the migration's transaction: it holds order writes for one pass over
-- the table.
create index orders_holding_stock_idx on orders (updated_at)
  where stock_reserved_at is not null and stock_released_at is null and status <> 'COMPLETED';
