/**
 * What `orders reconcile` looks for: orders whose pipeline stalled, and the event that asks for their
 * current run (`order.placed` for run 1, `order.retried` for a retry's run); and orders that ended
 * (not completed) with money or stock still held, which only a run's compensation gives back.
 */
import { ENDED_WITHOUT_SALE, type OrderStatus } from '../domain/order.js';
import { MONEY_HELD_STATUSES, type PaymentStatus } from '../domain/payment.js';
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
  /** The latest run's payment when it holds money (CHARGING or CAPTURED), whatever the order's status. */
  heldPayment: {
    run: number;
    status: PaymentStatus;
    amount: string;
    currency: string;
    chargeKey: string;
  } | null;
  /** The run whose reservation still holds the order's stock, if one does. */
  stockHeldBy: number | null;
  /** The current run's compensation has begun (`undo_run`): it was giving back what the order holds. */
  runUndone: boolean;
  /** A cancel was asked for the order (`cancel_requested_at`): no retry runs it again. */
  cancelRequested: boolean;
}

/**
 * Orders that have not changed for `olderThanMs` and are not final (PENDING, RESERVED, PAID), or
 * ended without a sale (PAYMENT_FAILED, CANCELLED, OUT_OF_STOCK) with money still held (a charge in
 * doubt never voided, a capture never refunded) or stock still reserved: a run stopped before its
 * compensations finished. Candidates; whether a run of theirs is still going is Temporal's to say.
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
              'lastError', e.last_error) end as request,
            m.held as "heldPayment",
            case when o.stock_reserved_at is not null and o.stock_released_at is null
                 then o.stock_run end as "stockHeldBy",
            coalesce(o.undo_run, 0) >= o.run as "runUndone",
            o.cancel_requested_at is not null as "cancelRequested"
       from orders o
       left join lateral (
         select id, type, status, last_error from event_outbox x
          where x.order_id = o.id
            and ((x.type = 'order.placed' and o.run = 1)
              or (x.type = 'order.retried' and (x.payload -> 'data' ->> 'run')::int = o.run))
          order by x.id desc limit 1) e on true
       left join lateral (
         select json_build_object('run', p.run, 'status', p.status, 'amount', p.amount::text,
                                  'currency', p.currency::text, 'chargeKey', p.charge_key) as held
           from payments p
          where p.order_id = o.id and p.status = any($4::text[])
          order by p.run desc limit 1) m on true
      where (o.status in ('PENDING', 'RESERVED', 'PAID')
             or (o.status = any($3::text[])
                 and (m.held is not null or (o.stock_reserved_at is not null and o.stock_released_at is null))))
        and o.updated_at < now() - $1::float8 * interval '1 millisecond'
      order by o.updated_at
      limit $2`,
    [olderThanMs, limit, ENDED_WITHOUT_SALE, MONEY_HELD_STATUSES],
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
