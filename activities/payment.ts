/**
 * Payment: charge through the gateway, record a failure, refund (compensation).
 *
 * The gateway call happens outside any transaction (never hold row locks across the network); its
 * idempotency key is the order id, so a retried attempt cannot take the money twice. The capture is
 * then recorded with the status change and its event in one transaction.
 */
import { ApplicationFailure } from '@temporalio/common';
import { buildEvent, type PaymentFailureCode } from '../lib/events.js';
import type { Logger } from '../lib/logger.js';
import { enqueueEvent } from '../db/outbox.js';
import { transitionOrder } from '../db/orders.js';
import { withTransaction, type Pool, type Queryable } from '../db/pool.js';
import type { OrderStatus } from '../workflows/contract.js';
import {
  GatewayUnavailableError,
  PaymentDeclinedError,
  type ChargeReceipt,
  type PaymentGateway,
} from './payment-gateway.js';
import {
  FAILURE_TYPES,
  invalidStatus,
  loadOrder,
  orderEventId,
  orderLogger,
  type StepArgs,
} from './shared.js';

export interface PaymentCapture {
  reference: string;
  amount: string;
  currency: string;
}

export interface FailPaymentArgs extends StepArgs {
  code: PaymentFailureCode;
  reason: string;
}

export interface RefundArgs {
  orderId: string;
  correlationId: string;
  reason: string;
}

export interface RefundResult {
  /** True when the order's capture is (now) refunded; false when nothing was ever captured. */
  refunded: boolean;
}

export interface PaymentDeps {
  pool: Pool;
  gateway: PaymentGateway;
  logger: Logger;
}

const PAID_OR_LATER: ReadonlySet<OrderStatus> = new Set(['PAID', 'COMPLETED']);

interface PaymentRow {
  status: 'CAPTURED' | 'DECLINED' | 'REFUNDED';
  reference: string | null;
  amount: string;
  currency: string;
}

async function loadPayment(db: Queryable, orderId: string): Promise<PaymentRow | undefined> {
  const { rows } = await db.query<PaymentRow>(
    'select status, reference, amount::text as amount, currency from payments where order_id = $1::uuid',
    [orderId],
  );
  return rows[0];
}

/** Gateway errors become Temporal failures: a decline is final, an outage is retried with backoff. */
function toActivityFailure(err: unknown): unknown {
  if (err instanceof PaymentDeclinedError) {
    return ApplicationFailure.nonRetryable(err.message, FAILURE_TYPES.PaymentDeclined, { code: err.code });
  }
  if (err instanceof GatewayUnavailableError) {
    return ApplicationFailure.retryable(err.message, FAILURE_TYPES.GatewayUnavailable);
  }
  return err;
}

export function createPaymentActivities({ pool, gateway, logger }: PaymentDeps) {
  /**
   * Charges the order total. On success: payments row CAPTURED, RESERVED → PAID and
   * `payment.completed`, in one transaction. Throws `PaymentDeclined` (non-retryable) or
   * `GatewayUnavailable` (retryable).
   */
  async function chargePayment(args: StepArgs): Promise<PaymentCapture> {
    const log = orderLogger(logger, 'chargePayment', args);
    const order = await loadOrder(pool, args.orderId);
    const existing = await loadPayment(pool, args.orderId);
    if (existing?.status === 'CAPTURED' && existing.reference && PAID_OR_LATER.has(order.status)) {
      // A retry of an attempt that committed: same answer, no second charge, no second event.
      return { reference: existing.reference, amount: existing.amount, currency: existing.currency };
    }
    if (order.status !== 'RESERVED') throw invalidStatus(args.orderId, 'chargePayment', order.status);

    let receipt: ChargeReceipt;
    try {
      receipt = await gateway.charge({
        idempotencyKey: args.orderId,
        orderId: args.orderId,
        customerId: order.customer_id,
        amount: order.total,
        currency: order.currency,
      });
    } catch (err) {
      log.warn({ err }, 'payment gateway refused the charge');
      throw toActivityFailure(err);
    }
    const capture: PaymentCapture = {
      reference: receipt.reference,
      amount: order.total,
      currency: order.currency,
    };

    const outcome = await withTransaction(pool, async (tx): Promise<OrderStatus> => {
      const locked = await loadOrder(tx, args.orderId, { lock: true });
      // The money was taken either way, so the capture is recorded either way: if the order left
      // RESERVED meanwhile, the saga's refund compensation finds this row and gives the money back.
      await tx.query(
        `insert into payments (order_id, amount, currency, status, reference)
         values ($1::uuid, $2::numeric, $3, 'CAPTURED', $4)
         on conflict (order_id) do nothing`,
        [args.orderId, capture.amount, capture.currency, capture.reference],
      );
      if (locked.status !== 'RESERVED') return locked.status;
      await transitionOrder(tx, args.orderId, 'PAID');
      await enqueueEvent(
        tx,
        buildEvent('payment.completed', {
          id: args.eventId,
          orderId: args.orderId,
          correlationId: args.correlationId,
          data: { ...capture, customerId: order.customer_id },
        }),
      );
      return 'PAID';
    });
    if (outcome !== 'PAID') throw invalidStatus(args.orderId, 'chargePayment (after capture)', outcome);
    log.info({ reference: capture.reference, amount: capture.amount }, 'payment captured');
    return capture;
  }

  /**
   * Records a declined or timed-out payment: payments row DECLINED, RESERVED → PAYMENT_FAILED and
   * `payment.failed` with the code, in one transaction.
   */
  async function failPayment(args: FailPaymentArgs): Promise<{ status: OrderStatus }> {
    const log = orderLogger(logger, 'failPayment', args);
    const status = await withTransaction(pool, async (tx): Promise<OrderStatus> => {
      const order = await loadOrder(tx, args.orderId, { lock: true });
      if (order.status === 'PAYMENT_FAILED') return order.status; // retry of a committed attempt
      // A capture committed although the saga never learned of it (that attempt's completion was
      // lost, then the deadline passed): the money is taken and the order PAID. Say so, change nothing;
      // the saga lets the capture stand.
      if (order.status === 'PAID') return order.status;
      if (order.status !== 'RESERVED') throw invalidStatus(args.orderId, 'failPayment', order.status);
      await tx.query(
        `insert into payments (order_id, amount, currency, status, failure_reason)
         values ($1::uuid, $2::numeric, $3, 'DECLINED', $4)
         on conflict (order_id) do nothing`,
        [args.orderId, order.total, order.currency, `${args.code}: ${args.reason}`],
      );
      await transitionOrder(tx, args.orderId, 'PAYMENT_FAILED', args.reason);
      await enqueueEvent(
        tx,
        buildEvent('payment.failed', {
          id: args.eventId,
          orderId: args.orderId,
          correlationId: args.correlationId,
          data: { amount: order.total, currency: order.currency, reason: args.reason, code: args.code },
        }),
      );
      return 'PAYMENT_FAILED';
    });
    log.info({ code: args.code, reason: args.reason }, 'payment failed');
    return { status };
  }

  /**
   * Compensation: refunds the capture if there is one (CAPTURED → REFUNDED), which covers a charge
   * that completed while the order was being cancelled. Nothing captured: nothing to do.
   */
  async function refundPayment(args: RefundArgs): Promise<RefundResult> {
    const log = orderLogger(logger, 'refundPayment', args);
    const payment = await loadPayment(pool, args.orderId);
    if (!payment || payment.status === 'DECLINED') return { refunded: false };
    if (payment.status === 'CAPTURED' && payment.reference) {
      try {
        await gateway.refund({
          idempotencyKey: `refund-${args.orderId}`,
          reference: payment.reference,
          amount: payment.amount,
          currency: payment.currency,
        });
      } catch (err) {
        throw toActivityFailure(err);
      }
      await withTransaction(pool, async (tx) => {
        const { rowCount } = await tx.query(
          `update payments set status = 'REFUNDED', updated_at = now()
           where order_id = $1::uuid and status = 'CAPTURED'`,
          [args.orderId],
        );
        if (rowCount === 0) return; // a concurrent attempt recorded it
        await enqueueEvent(
          tx,
          buildEvent('payment.refunded', {
            id: orderEventId(args.orderId, 'payment.refunded'),
            orderId: args.orderId,
            correlationId: args.correlationId,
            data: {
              amount: payment.amount,
              currency: payment.currency,
              reference: payment.reference!,
              reason: args.reason,
            },
          }),
        );
      });
      log.info({ reference: payment.reference, reason: args.reason }, 'payment refunded');
    }
    return { refunded: true };
  }

  return { chargePayment, failPayment, refundPayment };
}
