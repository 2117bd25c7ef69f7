/**
 * Customer notifications. The e-mail is simulated: it is recorded in `notifications` and logged.
 * `unique (order_id, kind)` makes a retried attempt (or a replayed saga) send nothing twice.
 */
import type { Logger } from '../lib/logger.js';
import type { Pool } from '../db/pool.js';
import { loadOrder, orderLogger } from './shared.js';

export const NOTIFICATION_KINDS = [
  'order-completed',
  'out-of-stock',
  'payment-failed',
  'order-cancelled',
] as const;
export type NotificationKind = (typeof NOTIFICATION_KINDS)[number];

export interface NotifyArgs {
  orderId: string;
  correlationId: string;
  kind: NotificationKind;
  /** Shown to the customer for failures and cancellations. */
  reason?: string;
}

export interface NotificationDeps {
  pool: Pool;
  logger: Logger;
}

function compose(
  kind: NotificationKind,
  orderId: string,
  reason: string | undefined,
): { subject: string; body: string } {
  const why = reason ? ` Reason: ${reason}.` : '';
  switch (kind) {
    case 'order-completed':
      return {
        subject: `Your order ${orderId} is confirmed`,
        body: `Thank you! We received your payment for order ${orderId} and are preparing it.`,
      };
    case 'out-of-stock':
      return {
        subject: `Your order ${orderId} could not be fulfilled`,
        body: `Some items of order ${orderId} are out of stock, so nothing was charged.${why}`,
      };
    case 'payment-failed':
      return {
        subject: `Payment for order ${orderId} failed`,
        body: `We could not take payment for order ${orderId}; the order was not placed.${why}`,
      };
    case 'order-cancelled':
      return {
        subject: `Your order ${orderId} was cancelled`,
        body: `Order ${orderId} was cancelled and any payment refunded.${why}`,
      };
  }
}

export function createNotificationActivities({ pool, logger }: NotificationDeps) {
  /** Sends (records and logs) one e-mail of `kind` for the order, at most once. */
  async function notifyCustomer(args: NotifyArgs): Promise<{ kind: NotificationKind }> {
    const log = orderLogger(logger, 'notifyCustomer', args);
    const order = await loadOrder(pool, args.orderId);
    const { subject, body } = compose(args.kind, args.orderId, args.reason);
    const { rowCount } = await pool.query(
      `insert into notifications (order_id, kind, recipient, subject, body)
       values ($1::uuid, $2, $3, $4, $5)
       on conflict (order_id, kind) do nothing`,
      [args.orderId, args.kind, order.email, subject, body],
    );
    if (rowCount === 1)
      log.info({ kind: args.kind, recipient: order.email, subject }, 'e-mail sent (simulated)');
    else log.debug({ kind: args.kind }, 'e-mail already sent; not sending again');
    // The recipient stays out of the result: results are kept in workflow history forever.
    return { kind: args.kind };
  }

  return { notifyCustomer };
}
