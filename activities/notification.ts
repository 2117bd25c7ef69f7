/**
 * Customer notifications. The e-mail is simulated: it is recorded in `notifications` and logged.
 * One e-mail of a kind per order and run: a retried attempt (or a reset run) sends nothing twice, a
 * retried order that completes tells the customer again, and a stale run tells nobody anything.
 */
import type { Logger } from '../lib/logger.js';
import { recordNotification } from '../db/notifications.js';
import { withTransaction, type Pool } from '../db/pool.js';
import { isCurrentRun, lockOrderFor, orderLogger, runOf, type StepArgs } from './shared.js';

export const NOTIFICATION_KINDS = [
  'order-completed',
  'out-of-stock',
  'payment-failed',
  'order-cancelled',
] as const;
export type NotificationKind = (typeof NOTIFICATION_KINDS)[number];

export interface NotifyArgs extends StepArgs {
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
  async function notifyCustomer(args: NotifyArgs): Promise<{ kind: NotificationKind; sent: boolean }> {
    const log = orderLogger(logger, 'notifyCustomer', args);
    const { subject, body } = compose(args.kind, args.orderId, args.reason);
    const outcome = await withTransaction(pool, async (tx) => {
      const order = await lockOrderFor(tx, args, 'notifyCustomer');
      if (!isCurrentRun(order, args)) return { sent: false, recipient: undefined };
      // The customer's data was erased (`orders erase-customer`): there is no one to write to.
      if (order.email === null) return { sent: false, recipient: null };
      const sent = await recordNotification(tx, {
        orderId: args.orderId,
        run: runOf(args),
        kind: args.kind,
        recipient: order.email,
        subject,
        body,
      });
      return { sent, recipient: order.email };
    });
    if (outcome.recipient === undefined)
      log.warn({ kind: args.kind }, "not the order's current run: no e-mail");
    else if (outcome.recipient === null)
      log.info({ kind: args.kind }, "the customer's data was erased: no e-mail");
    else if (!outcome.sent) log.debug({ kind: args.kind }, 'e-mail already sent; not sending again');
    else {
      // The address is personal data: at debug level only.
      log.debug({ recipient: outcome.recipient }, 'e-mail recipient');
      log.info({ kind: args.kind, subject }, 'e-mail sent (simulated)');
    }
    // The recipient stays out of the result: results are kept in workflow history forever.
    return { kind: args.kind, sent: outcome.sent };
  }

  return { notifyCustomer };
}
