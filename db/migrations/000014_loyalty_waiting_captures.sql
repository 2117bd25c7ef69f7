-- A retried order's capture that arrived while an earlier run's capture still held the order's award
-- (its refund not in yet: events of two runs may arrive in any order). When that earlier capture's
-- refund comes, the waiting capture earns the order's points instead; before this table it was
-- dropped, and the order ended with none though its capture stood. No personal data beyond what
-- loyalty_points holds: the order, the customer id, the points, the event and the gateway reference.
create table loyalty_waiting_captures (
  order_id    uuid not null,
  reference   text not null,
  customer_id text not null,
  points      integer not null,
  event_id    uuid not null,
  received_at timestamptz not null default now(),
  primary key (order_id, reference)
);
