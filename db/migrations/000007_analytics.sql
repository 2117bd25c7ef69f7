-- Owned by the analytics subscriber (subscribers/analytics), not by the saga: what it has learnt of
-- each order from the events alone, and every money movement, from which GET /analytics/summary is
-- computed. Events arrive at least once and in any order, so every column is a fold that gives the
-- same row whatever the order of arrival (see db/analytics.ts).
create table analytics_orders (
  order_id       uuid primary key,
  -- order.placed's occurredAt (the order's created_at); null until that event has arrived.
  placed_at      timestamptz,
  amount         numeric(12, 2),
  currency       char(3),
  -- The latest run known (order.retried's data.run) and when it began: a final event that occurred
  -- before run_started_at belongs to an older run and is ignored.
  run            integer not null default 1 check (run >= 1),
  run_started_at timestamptz,
  -- The latest run's outcome; null while it runs (an order.retried clears it).
  final_status   text check (final_status in ('COMPLETED', 'OUT_OF_STOCK', 'PAYMENT_FAILED', 'CANCELLED')),
  final_at       timestamptz,
  -- For a final status other than COMPLETED: a short, low-cardinality label (what the summary counts)
  -- and the event's own words.
  failure_reason text,
  failure_detail text,
  -- The span of events seen, whatever their order of arrival.
  first_event_at timestamptz not null,
  last_event_at  timestamptz not null,
  constraint analytics_orders_final_check check ((final_status is null) = (final_at is null))
);
-- The summary's window is on when the order was placed (or first seen, until order.placed arrives).
create index analytics_orders_placed_idx on analytics_orders ((coalesce(placed_at, first_event_at)));

-- One row per payment.completed / payment.refunded event. Money stays numeric, never a float.
create table analytics_payments (
  event_id    uuid primary key,
  order_id    uuid not null,
  kind        text not null check (kind in ('captured', 'refunded')),
  amount      numeric(12, 2) not null check (amount >= 0),
  currency    char(3) not null,
  -- The gateway's capture reference, which a refund of that capture carries too.
  reference   text not null,
  occurred_at timestamptz not null
);
create index analytics_payments_occurred_idx on analytics_payments (occurred_at);
create index analytics_payments_captured_ref_idx on analytics_payments (reference) where kind = 'captured';
