-- Erasing a customer's personal data (`orders erase-customer`, db/erasure.ts): the e-mail address
-- goes from the order and from its notifications, while the order keeps its amounts, lines and
-- timeline. When it was erased is recorded, so the order view can say why there is no address.
alter table orders
  alter column email drop not null,
  add column erased_at timestamptz;
alter table notifications alter column recipient drop not null;
