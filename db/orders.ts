/**
 * Guarded order status transitions, shared by the API and the saga's activities.
 *
 * A transition is `update ... where status = any(<allowed from>)`: if the row is not in one of the
 * expected states, nothing changes and the caller learns the current status. That makes every
 * activity safe to retry and makes concurrent writers (a cancel racing a reservation) harmless.
 */
import type { OrderStatus } from '../workflows/contract.js';
import type { Queryable } from './pool.js';

/** Which statuses each status may be entered from. */
export const TRANSITIONS: Readonly<Record<OrderStatus, readonly OrderStatus[]>> = {
  PENDING: [],
  RESERVED: ['PENDING'],
  OUT_OF_STOCK: ['PENDING'],
  PAID: ['RESERVED'],
  PAYMENT_FAILED: ['RESERVED'],
  COMPLETED: ['PAID'],
  CANCELLED: ['PENDING', 'RESERVED'],
};

export type TransitionResult =
  { changed: true; status: OrderStatus } | { changed: false; status: OrderStatus | undefined };

/**
 * Moves the order to `to` if its current status allows it. `changed: false` with `status === to`
 * means an earlier attempt already did it (idempotent retry); `status` undefined means no such order.
 */
export async function transitionOrder(
  db: Queryable,
  orderId: string,
  to: OrderStatus,
  reason: string | null = null,
): Promise<TransitionResult> {
  const updated = await db.query<{ status: OrderStatus }>(
    `update orders set status = $2, status_reason = coalesce($3, status_reason), updated_at = now()
     where id = $1::uuid and status = any($4::text[])
     returning status`,
    [orderId, to, reason, TRANSITIONS[to]],
  );
  if (updated.rowCount === 1) return { changed: true, status: to };
  const current = await db.query<{ status: OrderStatus }>('select status from orders where id = $1::uuid', [
    orderId,
  ]);
  return { changed: false, status: current.rows[0]?.status };
}
