/**
 * What `orders reconcile` looks for: orders whose pipeline stalled, and the event that asks for their
 * current run (`order.placed` for run 1, `order.retried` for a retry's run).
 */
import type { OrderStatus } from '../domain/order.js';
import type { Queryable } from './pool.js';
import { isoText } from './timestamps.js';

export interface StalledOrder {
  id: string;
  status: OrderStatus;
  run: number;
  startedRun: number | null;
  updatedAt: string;
  /** The outbox row asking for the current run, when it is still there. */
  request: { outboxId: string; type: string; published: boolean; lastError: string | null } | null;
}

/**
 * Orders not final (PENDING, RESERVED, PAID) that have not changed for `olderThanMs`: candidates;
 * whether a run of theirs is still going is Temporal's to say.
 */
export async function findStalledOrders(
  db: Queryable,
  { olderThanMs, limit }: { olderThanMs: number; limit: number },
): Promise<StalledOrder[]> {
  const { rows } = await db.query<StalledOrder>(
    `select o.id::text as id, o.status, o.run, o.started_run as "startedRun",
            ${isoText('o.updated_at')} as "updatedAt",
            case when e.id is null then null else json_build_object(
              'outboxId', e.id::text, 'type', e.type, 'published', e.status = 'PUBLISHED',
              'lastError', e.last_error) end as request
       from orders o
       left join lateral (
         select id, type, status, last_error from event_outbox x
          where x.order_id = o.id
            and ((x.type = 'order.placed' and o.run = 1)
              or (x.type = 'order.retried' and (x.payload -> 'data' ->> 'run')::int = o.run))
          order by x.id desc limit 1) e on true
      where o.status in ('PENDING', 'RESERVED', 'PAID')
        and o.updated_at < now() - $1::float8 * interval '1 millisecond'
      order by o.updated_at
      limit $2`,
    [olderThanMs, limit],
  );
  return rows;
}

/**
 * Sends an event again: the publisher takes it at once (a row held back by a long backoff, or one
 * published into a queue that lost it). Same event id, so consumers that saw it dedupe.
 */
export async function republishEvent(db: Queryable, outboxId: string): Promise<void> {
  await db.query(
    `update event_outbox set status = 'PENDING', available_at = now(), attempts = 0 where id = $1::bigint`,
    [outboxId],
  );
}
