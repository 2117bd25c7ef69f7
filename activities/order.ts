/**
 * Order status steps that are not part of another group: completing and cancelling.
 */
import { buildEvent } from '../lib/events.js';
import type { Logger } from '../lib/logger.js';
import { enqueueEvent } from '../db/outbox.js';
import { transitionOrder } from '../db/orders.js';
import { withTransaction, type Pool } from '../db/pool.js';
import { invalidStatus, loadOrder, orderLogger, type StepArgs } from './shared.js';

export interface CancelOrderArgs extends StepArgs {
  reason: string;
}

export interface OrderDeps {
  pool: Pool;
  logger: Logger;
}

export function createOrderActivities({ pool, logger }: OrderDeps) {
  /** PAID → COMPLETED with `order.completed`, after the customer was notified. */
  async function completeOrder(args: StepArgs): Promise<{ status: 'COMPLETED' }> {
    const log = orderLogger(logger, 'completeOrder', args);
    await withTransaction(pool, async (tx) => {
      const order = await loadOrder(tx, args.orderId, { lock: true });
      const moved = await transitionOrder(tx, args.orderId, 'COMPLETED');
      if (!moved.changed) {
        if (moved.status === 'COMPLETED') return; // retry of a committed attempt
        throw invalidStatus(args.orderId, 'completeOrder', moved.status);
      }
      await enqueueEvent(
        tx,
        buildEvent('order.completed', {
          id: args.eventId,
          orderId: args.orderId,
          correlationId: args.correlationId,
          data: { customerId: order.customer_id, total: order.total, currency: order.currency },
        }),
      );
    });
    log.info('order completed');
    return { status: 'COMPLETED' };
  }

  /**
   * → CANCELLED with `order.cancelled`. Runs after the compensations, so stock and money are back
   * by the time the event says so. Already CANCELLED (a retry, or cancelled by the API before the
   * saga started, whose event was written then) is success.
   */
  async function cancelOrder(args: CancelOrderArgs): Promise<{ status: 'CANCELLED' }> {
    const log = orderLogger(logger, 'cancelOrder', args);
    await withTransaction(pool, async (tx) => {
      await loadOrder(tx, args.orderId, { lock: true });
      let moved = await transitionOrder(tx, args.orderId, 'CANCELLED', args.reason);
      if (!moved.changed && moved.status === 'PAID') {
        // A charge that completed while the cancel was under way, already refunded by the saga's
        // compensation. TRANSITIONS (db/orders.ts) does not list PAID → CANCELLED because nothing
        // else may take that step; here it is guarded on the refund having happened.
        const { rowCount } = await tx.query(
          `update orders set status = 'CANCELLED', status_reason = $2, updated_at = now()
           where id = $1::uuid and status = 'PAID'
             and exists (select 1 from payments where order_id = $1::uuid and status = 'REFUNDED')`,
          [args.orderId, args.reason],
        );
        if (rowCount === 1) moved = { changed: true, status: 'CANCELLED' };
      }
      if (!moved.changed) {
        if (moved.status === 'CANCELLED') return;
        throw invalidStatus(args.orderId, 'cancelOrder', moved.status);
      }
      await enqueueEvent(
        tx,
        buildEvent('order.cancelled', {
          id: args.eventId,
          orderId: args.orderId,
          correlationId: args.correlationId,
          data: { reason: args.reason },
        }),
      );
    });
    log.info({ reason: args.reason }, 'order cancelled');
    return { status: 'CANCELLED' };
  }

  return { completeOrder, cancelOrder };
}
