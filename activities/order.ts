/**
 * Order status steps that are not part of another group: completing and cancelling.
 */
import { paidOrderMayBeCancelled } from '../domain/order.js';
import { buildEvent, runEventId } from '../lib/events.js';
import type { Logger } from '../lib/logger.js';
import type { OrderOutcomeMetrics } from '../lib/metrics.js';
import { enqueueEvent } from '../db/outbox.js';
import { cancelRefundedPaidOrder, transitionOrder } from '../db/orders.js';
import { findPayment } from '../db/payments.js';
import { withTransaction, type Pool } from '../db/pool.js';
import {
  assertNotUndone,
  invalidStatus,
  isCurrentRun,
  lockOrderFor,
  orderLogger,
  runOf,
  staleRun,
  type StepArgs,
} from './shared.js';

export interface CancelOrderArgs extends StepArgs {
  reason: string;
}

export interface OrderDeps {
  pool: Pool;
  logger: Logger;
  /** Counts an order this step ended, once (not when a retried attempt finds it ended). */
  metrics: OrderOutcomeMetrics;
}

export function createOrderActivities({ pool, logger, metrics }: OrderDeps) {
  /** PAID → COMPLETED with `order.completed`, after the customer was notified. */
  async function completeOrder(args: StepArgs): Promise<{ status: 'COMPLETED' }> {
    const log = orderLogger(logger, 'completeOrder', args);
    const run = runOf(args);
    const completed = await withTransaction(pool, async (tx) => {
      const order = await lockOrderFor(tx, args, 'completeOrder');
      if (!isCurrentRun(order, args)) throw staleRun(order, args, 'completeOrder');
      if (order.status === 'COMPLETED') return undefined; // an attempt of this run committed before
      assertNotUndone(order, args, 'completeOrder');
      const moved = await transitionOrder(tx, args.orderId, 'COMPLETED', { run });
      if (!moved.changed) throw invalidStatus(args.orderId, 'completeOrder', moved.status);
      await enqueueEvent(
        tx,
        buildEvent('order.completed', {
          id: runEventId(args.orderId, run, 'order.completed'),
          orderId: args.orderId,
          correlationId: args.correlationId,
          data: { customerId: order.customer_id, total: order.total, currency: order.currency },
        }),
      );
      return { placedAt: order.created_at };
    });
    if (completed) metrics.finished('COMPLETED', completed.placedAt);
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
    const run = runOf(args);
    const cancelled = await withTransaction(pool, async (tx) => {
      const order = await lockOrderFor(tx, args, 'cancelOrder');
      if (!isCurrentRun(order, args)) throw staleRun(order, args, 'cancelOrder');
      if (order.status === 'CANCELLED') return undefined;
      let moved = await transitionOrder(tx, args.orderId, 'CANCELLED', { reason: args.reason, run });
      // A charge that completed while the cancel was under way, already refunded by the compensation.
      if (
        !moved.changed &&
        moved.status === 'PAID' &&
        paidOrderMayBeCancelled((await findPayment(tx, args.orderId, run))?.status) &&
        (await cancelRefundedPaidOrder(tx, args.orderId, run, args.reason))
      ) {
        moved = { changed: true, status: 'CANCELLED' };
      }
      if (!moved.changed) throw invalidStatus(args.orderId, 'cancelOrder', moved.status);
      await enqueueEvent(
        tx,
        buildEvent('order.cancelled', {
          id: runEventId(args.orderId, run, 'order.cancelled'),
          orderId: args.orderId,
          correlationId: args.correlationId,
          data: { reason: args.reason },
        }),
      );
      return { placedAt: order.created_at };
    });
    if (cancelled) metrics.finished('CANCELLED', cancelled.placedAt);
    log.info({ reason: args.reason }, 'order cancelled');
    return { status: 'CANCELLED' };
  }

  return { completeOrder, cancelOrder };
}
