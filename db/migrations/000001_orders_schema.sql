-- The tables of the design (ARCHITECTURE.md). Status values are text with a check constraint, not an
-- enum type, so adding a status later is one `alter table ... drop/add constraint` in a transaction.

create table products (
  sku        text primary key,
  name       text not null,
  price      numeric(12, 2) not null check (price >= 0),
  currency   char(3) not null default 'USD',
  -- The database itself refuses to oversell, whatever the application does.
  stock_qty  integer not null check (stock_qty >= 0),
  updated_at timestamptz not null default now()
);

create table orders (
  id               uuid primary key,
  customer_id      text not null,
  email            text not null,
  status           text not null default 'PENDING' check (status in
                     ('PENDING', 'RESERVED', 'PAID', 'COMPLETED', 'OUT_OF_STOCK', 'PAYMENT_FAILED', 'CANCELLED')),
  total            numeric(12, 2) not null check (total >= 0),
  currency         char(3) not null,
  idempotency_key  text unique,
  -- sha256 of the canonical request body: same key + other body is a 409, not a silent replay.
  request_hash     text,
  correlation_id   text not null,
  status_reason    text,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now()
);
-- Keyset pagination: newest first, id breaks ties.
create index orders_created_idx on orders (created_at desc, id desc);
create index orders_customer_idx on orders (customer_id, created_at desc, id desc);
create index orders_status_idx on orders (status, created_at desc, id desc);

create table order_items (
  order_id   uuid not null references orders (id) on delete cascade,
  sku        text not null references products (sku),
  qty        integer not null check (qty > 0),
  unit_price numeric(12, 2) not null check (unit_price >= 0),
  primary key (order_id, sku)
);

create table event_outbox (
  id           bigint generated always as identity primary key,
  event_id     uuid not null unique,
  type         text not null,
  order_id     uuid,
  payload      jsonb not null,
  headers      jsonb not null default '{}'::jsonb,
  status       text not null default 'PENDING' check (status in ('PENDING', 'PUBLISHED')),
  attempts     integer not null default 0,
  last_error   text,
  -- A row whose publish failed waits until here before the next attempt (backoff, no hot loop).
  available_at timestamptz not null default now(),
  created_at   timestamptz not null default now(),
  published_at timestamptz
);
create index event_outbox_pending_idx on event_outbox (available_at, id) where status = 'PENDING';
create index event_outbox_order_idx on event_outbox (order_id, id);

-- Wake the outbox publisher as soon as a transaction that wrote events commits (NOTIFY is
-- transactional: it is delivered on commit, never for a rolled-back insert).
create function event_outbox_notify() returns trigger language plpgsql as $$
begin
  perform pg_notify('event_outbox', '');
  return null;
end;
$$;
create trigger event_outbox_notify after insert on event_outbox
  for each statement execute function event_outbox_notify();

create table processed_events (
  consumer     text not null,
  event_id     uuid not null,
  processed_at timestamptz not null default now(),
  primary key (consumer, event_id)
);

create table payments (
  order_id       uuid primary key references orders (id),
  amount         numeric(12, 2) not null,
  currency       char(3) not null,
  status         text not null check (status in ('CAPTURED', 'DECLINED', 'REFUNDED')),
  reference      text,
  failure_reason text,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now()
);

create table notifications (
  id         bigint generated always as identity primary key,
  order_id   uuid not null references orders (id),
  kind       text not null,
  recipient  text not null,
  subject    text not null,
  body       text not null,
  created_at timestamptz not null default now(),
  unique (order_id, kind)
);
