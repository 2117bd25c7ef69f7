/**
 * Payment: charge through the gateway, record a failure, refund (compensation).
 *
 * The gateway call happens outside any transaction (never hold row locks across the network); its
 * idempotency key is the order id, so a retried attempt cannot take the money twice. The capture is
 * then recorded with the status change and its event in one transaction.
 */
import { Context } from '@temporalio/activity';
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
  /** A charge of unknown outcome (CHARGING) was voided at the gateway by its key. */
  voided?: true;
}

/** A gateway call gives up before the activity's 30 s start-to-close timeout would cut it off. */
const GATEWAY_TIMEOUT_MS = 20_000;

export interface PaymentDeps {
  pool: Pool;
  gateway: PaymentGateway;
  logger: Logger;
}

const PAID_OR_LATER: ReadonlySet<OrderStatus> = new Set(['PAID', 'COMPLETED']);

interface PaymentRow {
  status: 'CHARGING' | 'CAPTURED' | 'DECLINED' | 'REFUNDED' | 'VOIDED';
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

/** One charge per order: every attempt, and the refund or void, names it by this key. */
const chargeKey = (orderId: string): string => orderId;

/** The running activity's cancellation (a cancel, or its timeout); never aborts outside an activity. */
function activityCancellation(): AbortSignal {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return new AbortController().signal; // called directly, e.g. by a test
  }
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

    // The intent first, committed before the gateway sees the charge: whatever happens to this
    // attempt after that, the compensation knows a charge may exist and voids it by its key.
    await pool.query(
      `insert into payments (order_id, amount, currency, status) values ($1::uuid, $2::numeric, $3, 'CHARGING')
       on conflict (order_id) do nothing`,
      [args.orderId, order.total, order.currency],
    );
    let receipt: ChargeReceipt;
    try {
      receipt = await gateway.charge(
        {
          idempotencyKey: chargeKey(args.orderId),
          orderId: args.orderId,
          customerId: order.customer_id,
          amount: order.total,
          currency: order.currency,
        },
        AbortSignal.any([activityCancellation(), AbortSignal.timeout(GATEWAY_TIMEOUT_MS)]),
      );
    } catch (err) {
      log.warn({ err }, 'payment gateway refused the charge');
      if (err instanceof PaymentDeclinedError) {
        // The gateway's final word: no money was taken, the intent is settled.
        await pool.query(
          `update payments set status = 'DECLINED', failure_reason = $2, updated_at = now()
           where order_id = $1::uuid and status = 'CHARGING'`,
          [args.orderId, `${err.code}: ${err.message}`],
        );
      } else if (err instanceof GatewayUnavailableError) {
        // Not reached: nothing was taken, so nothing to void. (Any other error, a timeout or a lost
        // response, leaves the outcome unknown and the intent CHARGING.)
        await pool.query(`delete from payments where order_id = $1::uuid and status = 'CHARGING'`, [
          args.orderId,
        ]);
      }
      throw toActivityFailure(err);
    }
    const capture: PaymentCapture = {
      reference: receipt.reference,
      amount: order.total,
      currency: order.currency,
    };

    const outcome = await withTransaction(pool, async (tx): Promise<OrderStatus | 'settled'> => {
      const locked = await loadOrder(tx, args.orderId, { lock: true });
      // The money was taken, so the capture is recorded whatever the order's status: if the order left
      // RESERVED meanwhile, the saga's refund compensation finds this row and gives the money back.
      const recorded = await tx.query(
        `update payments set status = 'CAPTURED', reference = $2, updated_at = now()
         where order_id = $1::uuid and status in ('CHARGING', 'CAPTURED')`,
        [args.orderId, capture.reference],
      );
      // DECLINED, VOIDED or REFUNDED: the saga settled the payment while this attempt was out.
      if (recorded.rowCount === 0) return 'settled';
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
    if (outcome === 'settled') {
      // A capture that landed after the saga gave up on it and voided the charge: give it back now,
      // or the customer pays for an order that failed.
      log.error({ reference: capture.reference }, 'late capture after the payment was settled; refunding it');
      await giveBack(args.orderId, capture);
      throw ApplicationFailure.nonRetryable(
        `chargePayment: order ${args.orderId} was settled while this charge was in flight; the late capture ${capture.reference} was refunded`,
        FAILURE_TYPES.InvalidOrderStatus,
      );
    }
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
      // A decline is the gateway's final word. A deadline is not: an attempt may have reached the
      // gateway, so a CHARGING row stays CHARGING for the refund compensation to void.
      await tx.query(
        `insert into payments (order_id, amount, currency, status, failure_reason)
         values ($1::uuid, $2::numeric, $3, 'DECLINED', $4)
         on conflict (order_id) do update
           set status = case when $5 = 'DECLINED' then 'DECLINED' else payments.status end,
               failure_reason = excluded.failure_reason, updated_at = now()
           where payments.status = 'CHARGING'`,
        [args.orderId, order.total, order.currency, `${args.code}: ${args.reason}`, args.code],
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
    if (payment.status === 'VOIDED') return { refunded: false, voided: true }; // a retry
    if (payment.status === 'CHARGING') {
      // An attempt reached (or may have reached) the gateway and its outcome was never recorded.
      await giveBack(args.orderId, payment);
      await pool.query(
        `update payments set status = 'VOIDED', updated_at = now() where order_id = $1::uuid and status = 'CHARGING'`,
        [args.orderId],
      );
      log.warn({ reason: args.reason }, 'charge of unknown outcome voided at the gateway');
      return { refunded: false, voided: true };
    }
    if (payment.status === 'CAPTURED' && payment.reference) {
      await giveBack(args.orderId, payment);
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

  /** Refunds (or, with no known capture, voids) the order's charge at the gateway; idempotent. */
  async function giveBack(
    orderId: string,
    charge: { amount: string; currency: string; reference?: string | null },
  ): Promise<void> {
    try {
      await gateway.refund({
        idempotencyKey: `refund-${orderId}`,
        chargeKey: chargeKey(orderId),
        ...(charge.reference ? { reference: charge.reference } : {}),
        amount: charge.amount,
        currency: charge.currency,
      });
    } catch (err) {
      throw toActivityFailure(err);
    }
  }

  return { chargePayment, failPayment, refundPayment };
}
