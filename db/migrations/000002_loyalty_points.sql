-- Owned by the loyalty-points subscriber (subscribers/loyalty), not by the saga: it shows that a new
-- consumer of acme.events adds its own table and queue and changes nothing in the core.
create table loyalty_points (
  order_id    uuid primary key,
  customer_id text not null,
  points      integer not null check (points >= 0),
  event_id    uuid not null,
  awarded_at  timestamptz not null default now()
);
create index loyalty_points_customer_idx on loyalty_points (customer_id);
