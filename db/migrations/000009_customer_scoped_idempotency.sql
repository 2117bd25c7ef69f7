-- Idempotency keys belong to the customer who sent them: the same key from two customers makes two
-- independent orders, and a reused key can only ever answer with the caller's own order. They live
-- in a table of their own, so that they can be pruned after IDEMPOTENCY_KEY_RETENTION_HOURS without
-- touching the orders they made (a key older than that is no longer honoured, pruned or not).
create table idempotency_keys (
  customer_id  text not null,
  key          text not null,
  -- sha256 of the canonical request: the same key with another body is a 409, not a silent replay.
  request_hash text not null,
  order_id     uuid not null references orders (id) on delete cascade,
  created_at   timestamptz not null default now(),
  primary key (customer_id, key)
);
-- The retention job deletes by age.
create index idempotency_keys_created_idx on idempotency_keys (created_at);

insert into idempotency_keys (customer_id, key, request_hash, order_id, created_at)
select customer_id, idempotency_key, coalesce(request_hash, ''), id, created_at
  from orders
 where idempotency_key is not null;

alter table orders
  drop column idempotency_key,
  drop column request_hash,
  -- Why the order was cancelled: a code from the fixed list (domain/cancel.ts), and the caller's
  -- note, kept for the record and never e-mailed. The status reason holds the code's wording.
  add column cancel_code text,
  add column cancel_note text check (char_length(cancel_note) <= 500);
