/**
 * Payment: charge through the gateway, record a failure, refund or void (compensation).
 *
 * The gateway call happens outside any transaction (never hold row locks across the network). Each
 * run charges under its own idempotency key (domain/payment.ts), so a retried attempt cannot take
 * the money twice and a retried order is not answered with its first run's decline. The intent is
 * committed before the call (CHARGING) and stays until the answer is known, so money whose answer
 * was lost is never forgotten: the compensation voids it, or refunds it if it was captured.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { cancelWording, type CancelCode } from '../domain/cancel.js';
import { chargeKey, refundKey, voidKey } from '../domain/payment.js';
import type { OrderStatus } from '../domain/order.js';
import { buildEvent, runEventId, type PaymentFailureCode } from '../lib/events.js';
import type { Logger } from '../lib/logger.js';
import type { SagaMetrics } from '../lib/metrics.js';
import { enqueueEvent } from '../db/outbox.js';
import { cancelRecordedBefore, markRunUndone, noteWaitingForPayment, transitionOrder } from '../db/orders.js';
import {
  endAttemptNotReached,
  findPayment,
  markCaptured,
  markDeclined,
  markRefunded,
  markVoided,
  openChargeAttempt,
  recordPaymentFailure,
  type PaymentRow,
} from '../db/payments.js';
import { withTransaction, type Pool } from '../db/pool.js';
import {
  GatewayUnavailableError,
  PaymentDeclinedError,
  type ChargeReceipt,
  type PaymentGateway,
} from './payment-gateway.js';
import {
  FAILURE_TYPES,
  assertNotUndone,
  invalidStatus,
  isCurrentRun,
  lockOrderFor,
  orderLogger,
  runOf,
  staleRun,
  type CompensationArgs,
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
  /**
   * For a deadline: when the saga decided it (workflow time, epoch ms). A cancel recorded on the order
   * before then, which this run never took, wins: failPayment refuses and the saga cancels. One
   * recorded after was answered "too late" by the saga, and the payment fails. Absent (a saga before
   * PATCHES.deadlineYieldsToRecordedCancel): the payment fails whatever is recorded.
   */
  deadlineDecidedAt?: number;
}

export type RefundArgs = CompensationArgs;

export interface RefundResult {
  refunded: boolean;
  /** A charge of unknown outcome was voided at the gateway (nothing had been captured). */
  voided?: boolean;
  /** Why nothing was done, when nothing was. */
  skipped?: string;
}

export interface PaymentDeps {
  pool: Pool;
  gateway: PaymentGateway;
  logger: Logger;
  /** Counts an order `failPayment` ended, once (not when a retried attempt finds it ended), and why. */
  metrics: Pick<SagaMetrics, 'finished' | 'paymentFailed'>;
}

const PAID_OR_LATER: ReadonlySet<OrderStatus> = new Set(['PAID', 'COMPLETED']);

/**
 * The running activity's cancellation (a cancel, or its timeout). The bound on each call is the
 * gateway's own (`withCallTimeout`, PAYMENT_GATEWAY_TIMEOUT_MS), wrapped around it by the worker.
 */
function gatewaySignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined; // called directly, e.g. by a test
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

/**
 * The refusal that tells the saga the customer asked to cancel (recorded on the order) and this run
 * never took it: it cancels the order as asked, in the words of the cancel's recorded code (what the
 * e-mail, the event and the status then say).
 */
function cancelRequested(order: { cancel_code: CancelCode | null }, message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    message,
    FAILURE_TYPES.CancelRequested,
    ...(order.cancel_code ? [{ wording: cancelWording(order.cancel_code) }] : []),
  );
}

/** The decline recorded on a run's intent (`markDeclined`: `<code>: <message>`), as the gateway gave it. */
function declinedAgain(intent: PaymentRow): ApplicationFailure {
  const recorded = /^([^:\s]+): (.*)$/s.exec(intent.failure_reason ?? '');
  const [code, message] = recorded ? [recorded[1]!, recorded[2]!] : ['DECLINED', 'payment declined'];
  return toActivityFailure(new PaymentDeclinedError(message, code)) as ApplicationFailure;
}

export function createPaymentActivities({ pool, gateway, logger, metrics }: PaymentDeps) {
  /**
   * Charges the order total for the order's current run. On success: the run's payment CAPTURED,
   * RESERVED → PAID and `payment.completed`, in one transaction. Throws `PaymentDeclined`
   * (non-retryable) or `GatewayUnavailable` (retryable).
   */
  async function chargePayment(args: StepArgs): Promise<PaymentCapture> {
    const log = orderLogger(logger, 'chargePayment', args);
    const run = runOf(args);

    // The intent first, committed before the gateway sees the charge: whatever happens to this
    // attempt after that, the compensation knows a charge may exist and voids it by its key.
    const prepared = await withTransaction(pool, async (tx) => {
      const order = await lockOrderFor(tx, args, 'chargePayment');
      if (!isCurrentRun(order, args)) throw staleRun(order, args, 'chargePayment');
      const existing = await findPayment(tx, args.orderId, run);
      if (existing?.status === 'CAPTURED' && existing.reference && PAID_OR_LATER.has(order.status)) {
        // An attempt of this run committed before: the same answer, no second charge, no second event.
        return { kind: 'done' as const, capture: toCapture(existing) };
      }
      if (order.status !== 'RESERVED') throw invalidStatus(args.orderId, 'chargePayment', order.status);
      assertNotUndone(order, args, 'chargePayment');
      if (order.cancel_requested) {
        // The customer asked to cancel and this run never took it (the update was lost to an outage,
        // or the run was reset since): no charge; the saga cancels the order as asked.
        throw cancelRequested(
          order,
          `chargePayment: the customer asked to cancel order ${args.orderId}; not charging`,
        );
      }
      const intent = await openChargeAttempt(tx, {
        orderId: args.orderId,
        run,
        amount: order.total,
        currency: order.currency,
        chargeKey: chargeKey(args.orderId, run),
      });
      // An attempt of this run was declined and its answer never reached the saga (the worker
      // restarted, or the attempt timed out just after the decline was recorded): under the same key
      // the gateway gives the same answer, so this attempt gives it too. Anything else would fail the
      // run as a step failure, and an automatic retry would then charge the declined customer again.
      if (intent.status === 'DECLINED') throw declinedAgain(intent);
      if (intent.status !== 'CHARGING' && intent.status !== 'CAPTURED') {
        throw ApplicationFailure.nonRetryable(
          `chargePayment: the payment of run ${run} is already ${intent.status}; not charging again`,
          FAILURE_TYPES.InvalidOrderStatus,
        );
      }
      return { kind: 'charge' as const, order, intent };
    });
    if (prepared.kind === 'done') return prepared.capture;
    const { order, intent } = prepared;

    let receipt: ChargeReceipt;
    try {
      receipt = await gateway.charge(
        {
          idempotencyKey: intent.charge_key,
          orderId: args.orderId,
          customerId: order.customer_id,
          amount: intent.amount,
          currency: intent.currency,
        },
        gatewaySignal(),
      );
    } catch (err) {
      log.warn({ err }, 'payment gateway refused the charge');
      // A decline is the gateway's final word under this key. "Not reached" clears only this
      // attempt's doubt: an earlier attempt may have reached the gateway and taken the money, and
      // then the intent stays CHARGING for the compensation to void. Anything else (a timeout, a
      // lost answer) leaves this attempt in doubt too.
      if (err instanceof PaymentDeclinedError && err.code === 'VOIDED') {
        // The compensation voided this key at the gateway and may not have recorded it yet: it was a
        // void, whichever of the two writes first.
        await markVoided(pool, args.orderId, run);
      } else if (err instanceof PaymentDeclinedError) {
        await markDeclined(pool, args.orderId, run, `${err.code}: ${err.message}`);
      } else if (err instanceof GatewayUnavailableError) {
        await withTransaction(pool, async (tx) => {
          await lockOrderFor(tx, args, 'chargePayment'); // serialised with a concurrent attempt's start
          await endAttemptNotReached(tx, args.orderId, run);
          await noteWaitingForPayment(tx, args.orderId, run); // retried until the deadline: say so
        });
      }
      throw toActivityFailure(err);
    }
    const capture: PaymentCapture = {
      reference: receipt.reference,
      amount: intent.amount,
      currency: intent.currency,
    };

    const outcome = await withTransaction(pool, async (tx) => {
      const locked = await lockOrderFor(tx, args, 'chargePayment');
      // The money was taken, so the capture is recorded whatever the order's status.
      if (!(await markCaptured(tx, args.orderId, run, capture.reference))) {
        return { giveBack: `its payment was settled while the charge was in flight` };
      }
      if (!isCurrentRun(locked, args)) return { giveBack: `the order moved on to run ${locked.run}` };
      if (locked.undo_run !== null && locked.undo_run >= run) {
        return { giveBack: `run ${run} is being undone (its compensation began)` };
      }
      if (PAID_OR_LATER.has(locked.status)) return { paid: true }; // a concurrent attempt recorded it
      if (locked.status !== 'RESERVED') return { giveBack: `the order is ${locked.status}` };
      await transitionOrder(tx, args.orderId, 'PAID', { run });
      await enqueueEvent(
        tx,
        buildEvent('payment.completed', {
          id: runEventId(args.orderId, run, 'payment.completed'),
          orderId: args.orderId,
          correlationId: args.correlationId,
          data: { ...capture, customerId: order.customer_id },
        }),
      );
      return { paid: true };
    });
    if ('giveBack' in outcome) {
      // A capture that landed after the saga gave up on it: give it back now, or the customer pays
      // for an order that failed.
      log.error({ reference: capture.reference, why: outcome.giveBack }, 'late capture; refunding it');
      await refundCapture(args, { ...intent, reference: capture.reference }, 'late capture');
      throw ApplicationFailure.nonRetryable(
        `chargePayment: ${outcome.giveBack}; the late capture ${capture.reference} was refunded`,
        FAILURE_TYPES.InvalidOrderStatus,
      );
    }
    log.info({ reference: capture.reference, amount: capture.amount }, 'payment captured');
    return capture;
  }

  /**
   * Records a declined or timed-out payment for the current run: the run's payment DECLINED (or left
   * CHARGING for the compensation to void), RESERVED → PAYMENT_FAILED and `payment.failed` with the
   * code, in one transaction.
   */
  async function failPayment(args: FailPaymentArgs): Promise<{ status: OrderStatus }> {
    const log = orderLogger(logger, 'failPayment', args);
    const run = runOf(args);
    let failedNow: { placedAt: Date } | undefined; // set when this attempt made the transition
    const status = await withTransaction(pool, async (tx): Promise<OrderStatus> => {
      const order = await lockOrderFor(tx, args, 'failPayment');
      if (!isCurrentRun(order, args)) throw staleRun(order, args, 'failPayment');
      if (order.status === 'PAYMENT_FAILED') return order.status; // an attempt of this run committed
      assertNotUndone(order, args, 'failPayment');
      // A capture committed although the saga never learned of it (that attempt's completion was
      // lost, then the deadline passed): the money is taken and the order PAID. Say so, change nothing;
      // the saga lets the capture stand.
      if (order.status === 'PAID') return order.status;
      if (order.status !== 'RESERVED') throw invalidStatus(args.orderId, 'failPayment', order.status);
      if (
        args.code === 'DEADLINE_EXCEEDED' &&
        args.deadlineDecidedAt !== undefined &&
        order.cancel_requested &&
        (await cancelRecordedBefore(tx, args.orderId, new Date(args.deadlineDecidedAt)))
      ) {
        // The deadline is the system's own limit; the customer's cancel, recorded on the order before
        // it passed but never taken by this run (a run reset after its deadline: the timer fires at
        // once, and no charge attempt asks the order), is what they asked for: the saga cancels.
        throw cancelRequested(
          order,
          `failPayment: the customer asked to cancel order ${args.orderId}; cancelling instead of failing the payment`,
        );
      }
      await recordPaymentFailure(tx, {
        orderId: args.orderId,
        run,
        amount: order.total,
        currency: order.currency,
        chargeKey: chargeKey(args.orderId, run),
        code: args.code,
        reason: args.reason,
      });
      await transitionOrder(tx, args.orderId, 'PAYMENT_FAILED', { reason: args.reason, run });
      await enqueueEvent(
        tx,
        buildEvent('payment.failed', {
          id: runEventId(args.orderId, run, 'payment.failed'),
          orderId: args.orderId,
          correlationId: args.correlationId,
          data: { amount: order.total, currency: order.currency, reason: args.reason, code: args.code },
        }),
      );
      failedNow = { placedAt: order.created_at };
      return 'PAYMENT_FAILED';
    });
    // Counted once committed: an attempt whose transaction rolled back counts nothing.
    if (failedNow) {
      metrics.finished('PAYMENT_FAILED', failedNow.placedAt);
      metrics.paymentFailed(args.code);
    }
    log.info({ code: args.code, reason: args.reason }, 'payment failed');
    return { status };
  }

  /**
   * Compensation: gives back this run's money. A capture is refunded (CAPTURED → REFUNDED, with
   * `payment.refunded`); a charge of unknown outcome is voided at the gateway (VOIDED), or refunded
   * if the gateway says it was captured after all. Nothing captured: nothing to do. Only the run's
   * own payment is touched, and never the capture of an order that completed.
   */
  async function refundPayment(args: RefundArgs): Promise<RefundResult> {
    const log = orderLogger(logger, 'refundPayment', args);
    const run = runOf(args);
    const { order, payment } = await withTransaction(pool, async (tx) => {
      const locked = await lockOrderFor(tx, args, 'refundPayment');
      // From here on, no forward step of this run may act: a charge landing later is given back.
      if (isCurrentRun(locked, args) && locked.status !== 'COMPLETED') {
        await markRunUndone(tx, args.orderId, run, { cancelled: args.cancelled ?? false });
      }
      return { order: locked, payment: await findPayment(tx, args.orderId, run) };
    });
    if (!payment || payment.status === 'DECLINED' || payment.status === 'REFUNDED') {
      return { refunded: payment?.status === 'REFUNDED' };
    }
    if (payment.status === 'VOIDED') return { refunded: false, voided: true }; // an earlier attempt
    if (isCurrentRun(order, args) && order.status === 'COMPLETED') {
      log.warn('refund: the order completed, its capture stands; changing nothing');
      return { refunded: false, skipped: 'the order completed: its capture stands' };
    }
    if (payment.status === 'CHARGING') {
      // An attempt reached (or may have reached) the gateway and its outcome was never recorded.
      let voided;
      try {
        voided = await gateway.void(
          { idempotencyKey: voidKey(payment.charge_key), chargeKey: payment.charge_key },
          gatewaySignal(),
        );
      } catch (err) {
        throw toActivityFailure(err);
      }
      if (voided.outcome === 'voided') {
        await markVoided(pool, args.orderId, run);
        log.warn({ reason: args.reason }, 'charge of unknown outcome voided at the gateway');
        return { refunded: false, voided: true };
      }
      await refundCapture(args, { ...payment, reference: voided.reference }, args.reason);
      return { refunded: true };
    }
    await refundCapture(args, { ...payment, reference: payment.reference! }, args.reason);
    return { refunded: true };
  }

  /** Refunds a capture at the gateway (by the refund's own key), then records it with its event. */
  async function refundCapture(
    args: StepArgs,
    payment: Pick<PaymentRow, 'charge_key' | 'amount' | 'currency'> & { reference: string },
    reason: string,
  ): Promise<void> {
    const run = runOf(args);
    try {
      await gateway.refund(
        {
          idempotencyKey: refundKey(payment.charge_key),
          chargeKey: payment.charge_key,
          reference: payment.reference,
          amount: payment.amount,
          currency: payment.currency,
        },
        gatewaySignal(),
      );
    } catch (err) {
      throw toActivityFailure(err);
    }
    await withTransaction(pool, async (tx) => {
      if (!(await markRefunded(tx, args.orderId, run, payment.reference))) return; // recorded before
      await enqueueEvent(
        tx,
        buildEvent('payment.refunded', {
          id: runEventId(args.orderId, run, 'payment.refunded'),
          orderId: args.orderId,
          correlationId: args.correlationId,
          data: { amount: payment.amount, currency: payment.currency, reference: payment.reference, reason },
        }),
      );
    });
    orderLogger(logger, 'refundPayment', args).info(
      { reference: payment.reference, reason },
      'payment refunded',
    );
  }

  return { chargePayment, failPayment, refundPayment };
}

function toCapture(payment: PaymentRow): PaymentCapture {
  return { reference: payment.reference!, amount: payment.amount, currency: payment.currency };
}
