/**
 * Pieces every activity group uses: the argument shape, the order row, typed failures and the
 * per-order logger.
 *
 * Idempotency rule for every activity here: the workflow generates the event id (uuid4() in
 * workflow code, so it is fixed in history) and passes it in. A retried attempt carries the same id,
 * the outbox insert is a no-op for a known id, and guarded transitions change no second row, so the
 * retry returns the same result the first attempt did.
 */
import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import type { EventType } from '../lib/events.js';
import type { Logger } from '../lib/logger.js';
import type { Queryable } from '../db/pool.js';
import type { OrderStatus } from '../workflows/contract.js';
import { FAILURE_TYPES } from '../workflows/failures.js';

export { FAILURE_TYPES };

/** What identifies one saga step: the order, its trace id, and the id of the event it may write. */
export interface StepArgs {
  orderId: string;
  correlationId: string;
  /** Deterministic (generated in the workflow): the outbox dedupes a retried attempt by it. */
  eventId: string;
}

/**
 * An event id fixed by the order alone (a name-based UUID, RFC 9562 §5.5 layout over SHA-256), for
 * the events that happen at most once per order and are written by an activity whose arguments
 * carry no workflow-generated id. A retry derives the same id, so the outbox writes it once.
 */
export function orderEventId(orderId: string, type: EventType): string {
  const h = createHash('sha256').update(`acme-orders:${orderId}:${type}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x50; // version 5 layout (name-based)
  h[8] = (h[8]! & 0x3f) | 0x80; // RFC variant
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export interface OrderRow {
  id: string;
  customer_id: string;
  email: string;
  status: OrderStatus;
  total: string;
  currency: string;
  correlation_id: string;
}

export interface ItemRow {
  sku: string;
  qty: number;
}

export async function loadOrder(
  db: Queryable,
  orderId: string,
  opts: { lock?: boolean } = {},
): Promise<OrderRow> {
  const { rows } = await db.query<OrderRow>(
    `select id, customer_id, email, status, total::text as total, currency, correlation_id
     from orders where id = $1::uuid ${opts.lock ? 'for update' : ''}`,
    [orderId],
  );
  const order = rows[0];
  if (!order) {
    throw ApplicationFailure.nonRetryable(
      `order ${orderId} does not exist: the saga was started for an order that was never stored`,
      FAILURE_TYPES.OrderNotFound,
    );
  }
  return order;
}

export async function loadItems(db: Queryable, orderId: string): Promise<ItemRow[]> {
  const { rows } = await db.query<ItemRow>(
    'select sku, qty from order_items where order_id = $1::uuid order by sku',
    [orderId],
  );
  return rows;
}

export function invalidStatus(
  orderId: string,
  step: string,
  status: OrderStatus | undefined,
): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `${step}: order ${orderId} is ${status ?? 'missing'}, which this step cannot act on`,
    FAILURE_TYPES.InvalidOrderStatus,
    { orderId, status },
  );
}

/** The logger every activity uses for one order, so one grep on orderId follows it end to end. */
export function orderLogger(
  logger: Logger,
  activity: string,
  args: { orderId: string; correlationId: string },
) {
  return logger.child({ activity, orderId: args.orderId, correlationId: args.correlationId });
}
