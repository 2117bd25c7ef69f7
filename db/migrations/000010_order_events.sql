-- The order's event timeline, kept for as long as the order (GET /orders/{id} reads it), while the
-- outbox rows it comes from are pruned once published (db/retention.ts). It holds no payload, so no
-- personal data: the type, the ids and the times.
create table order_events (
  event_id     uuid primary key,
  order_id     uuid not null,
  type         text not null,
  -- The outbox row's id: the order in which the events were written, as the timeline lists them.
  seq          bigint not null,
  occurred_at  timestamptz not null,
  -- Copied from the outbox row when that row is pruned; until then the outbox row says it.
  published_at timestamptz
);
create index order_events_order_idx on order_events (order_id, seq);

-- Every event written to the outbox enters the timeline in the same transaction, whichever code path
-- wrote it: a statement-level trigger over the inserted rows, so a batch costs one insert.
create function order_events_record() returns trigger language plpgsql as $$
begin
  insert into order_events (event_id, order_id, type, seq, occurred_at)
  select n.event_id, n.order_id, n.type, n.id,
         coalesce((n.payload ->> 'occurredAt')::timestamptz, n.created_at)
    from inserted n
   where n.order_id is not null
  on conflict (event_id) do nothing;
  return null;
end;
$$;
create trigger order_events_record after insert on event_outbox
  referencing new table as inserted
  for each statement execute function order_events_record();

insert into order_events (event_id, order_id, type, seq, occurred_at, published_at)
select e.event_id, e.order_id, e.type, e.id,
       coalesce((e.payload ->> 'occurredAt')::timestamptz, e.created_at), e.published_at
  from event_outbox e
 where e.order_id is not null
on conflict (event_id) do nothing;

-- What retention scans: published rows by age, processed-event records by age (idempotency keys
-- have their own index, 000009).
create index event_outbox_published_idx on event_outbox (published_at) where status = 'PUBLISHED';
create index processed_events_processed_at_idx on processed_events (processed_at);
