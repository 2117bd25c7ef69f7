-- Every refunded capture, by its gateway reference: no award is made for it, whatever order its
-- events arrive in. The order's row alone held one tombstone per order, which a later run's award
-- and refund replaced; a late payment.completed of an earlier run's refunded capture then earned its
-- points after all. No personal data: an order id and the gateway's reference.
create table loyalty_refunded_captures (
  order_id uuid not null,
  reference text not null,
  refunded_at timestamptz not null default now(),
  primary key (order_id, reference)
);

insert into loyalty_refunded_captures (order_id, reference, refunded_at)
select order_id, reference, revoked_at
from loyalty_points
where revoked_at is not null and reference is not null;
