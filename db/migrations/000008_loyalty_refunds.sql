-- Loyalty points are taken back when the payment that earned them is refunded. The award remembers
-- which capture earned it (the gateway reference), so a refund takes back only that award, a
-- refund that arrives before its payment.completed (delivery is not ordered) leaves a tombstone the
-- late award respects, and a retried order's new capture may earn points again.
alter table loyalty_points
  add column reference text,
  add column revoked_at timestamptz,
  -- A tombstone (refund seen first) knows no customer: payment.refunded does not carry one.
  alter column customer_id drop not null;
