/**
 * Retention: what is pruned once it can no longer matter, in small batches (each its own statement,
 * rows taken with `skip locked`), so that pruning never holds a lock the order pipeline waits on.
 * What is kept: every order, its lines, payments and notifications, its event timeline
 * (`order_events`), the outbox rows of orders still under way, and the dead-letter queues.
 */
import { FINAL_STATUSES } from '../domain/order.js';
import type { Queryable } from './pool.js';

const FINAL = [...FINAL_STATUSES];

/**
 * Deletes up to `limit` published outbox rows older than `olderThanMs`, copying each one's
 * publication time into the timeline first (the timeline row itself was written with the event).
 * Rows of an order not in a final status stay: `orders reconcile --fix` may have to send them again.
 */
export async function prunePublishedEvents(
  db: Queryable,
  { olderThanMs, limit }: { olderThanMs: number; limit: number },
): Promise<number> {
  const { rows } = await db.query<{ deleted: number }>(
    `with gone as (
       delete from event_outbox e
        where e.id in (
          select x.id from event_outbox x
           where x.status = 'PUBLISHED'
             and x.published_at < now() - $1::float8 * interval '1 millisecond'
             and not exists (select 1 from orders o
                              where o.id = x.order_id and o.status <> all($3::text[]))
           order by x.published_at
           limit $2
           for update skip locked)
       returning e.event_id, e.published_at),
     kept as (
       update order_events t set published_at = g.published_at
         from gone g where t.event_id = g.event_id
       returning 1)
     select (select count(*) from gone)::int as deleted`,
    [olderThanMs, limit, FINAL],
  );
  return rows[0]!.deleted;
}

/**
 * Deletes up to `limit` consumers' dedupe records older than `olderThanMs`. The setting is refused
 * below the longest window in which a duplicate can still arrive (lib/config.ts), and each
 * consumer's effect is keyed as well (an order's award, a payment's event id), so a copy arriving
 * later still changes nothing.
 */
export async function pruneProcessedEvents(
  db: Queryable,
  { olderThanMs, limit }: { olderThanMs: number; limit: number },
): Promise<number> {
  const { rowCount } = await db.query(
    `delete from processed_events p
      using (select consumer, event_id from processed_events
              where processed_at < now() - $1::float8 * interval '1 millisecond'
              order by processed_at
              limit $2
              for update skip locked) old
      where p.consumer = old.consumer and p.event_id = old.event_id`,
    [olderThanMs, limit],
  );
  return rowCount ?? 0;
}

/**
 * Deletes up to `limit` idempotency keys older than `olderThanMs`: past IDEMPOTENCY_KEY_RETENTION_HOURS
 * a key is no longer honoured (db/order-placement.ts), so deleting it changes no answer; the order it
 * made stays.
 */
export async function expireIdempotencyKeys(
  db: Queryable,
  { olderThanMs, limit }: { olderThanMs: number; limit: number },
): Promise<number> {
  const { rowCount } = await db.query(
    `delete from idempotency_keys k
      using (select customer_id, key from idempotency_keys
              where created_at < now() - $1::float8 * interval '1 millisecond'
              order by created_at
              limit $2
              for update skip locked) old
      where k.customer_id = old.customer_id and k.key = old.key`,
    [olderThanMs, limit],
  );
  return rowCount ?? 0;
}
