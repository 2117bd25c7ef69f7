/**
 * The order saga: reserve inventory, charge payment before a deadline, notify, complete; undo what
 * was done (in reverse) when payment fails or the order is cancelled.
 *
 * Deterministic code only: no I/O, no clocks, no randomness. Every side effect is an activity called
 * with the order and the run (`OrderSagaInput.run`); the activity keys what it does by them (its
 * event ids, the run's charge, notifications and stock), so a retried activity, a reset run or a
 * stray run of the same order writes nothing twice, and a run that is not the order's current one
 * changes nothing (activities/shared.ts).
 *
 * CHANGING THIS FILE: running sagas replay their history against the new code. Any change to which
 * commands are issued, or in what order (activities, timers, search-attribute upserts), must be
 * guarded with `patched('<change-id>')` (and later `deprecatePatch`), and the replay tests
 * (test/workflow/replay.test.ts over test/workflow/histories/) must stay green. Record new histories
 * with `RECORD_HISTORIES=1 npx vitest run --project workflow test/workflow/replay.test.ts`, then
 * `npx prettier --write test/workflow/histories`.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  allHandlersFinished,
  condition,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  type ActivityOptions,
} from '@temporalio/workflow';
import type * as activities from '../activities/index.js';
import type { PaymentFailureCode } from '../lib/events.js';
import { FINAL_STATUSES, mayBeCancelledNow, type OrderStatus } from '../domain/order.js';
import { textProblem } from '../domain/text.js';
import {
  SEARCH_ATTRIBUTES,
  cancelUpdate,
  statusQuery,
  type CancelAccepted,
  type CancelRequest,
  type OrderSagaInput,
  type OrderSagaResult,
  type OrderSagaState,
  type SagaStep,
} from './contract.js';
import { FAILURE_TYPES } from './failures.js';

type Activities = activities.Activities;

/**
 * Changes to this workflow since its first release, each guarded by `patched(id)` so that histories
 * recorded before it still replay (test/workflow/replay.test.ts).
 */
export const PATCHES = {
  /**
   * An activity attempt already running when the saga is cancelled (or its payment deadline passes)
   * may end in its own failure rather than a cancellation: the server reports it as failed with
   * retryState CANCEL_REQUESTED. The cancel (or the deadline) was decided first, so it still wins;
   * before this, such a failure was taken for a broken step and failed the whole saga.
   */
  failedAttemptAfterCancel: 'failed-attempt-after-cancel',
  /**
   * The deadline passed, but a charge attempt had committed its capture before its completion was
   * lost (worker crash, lost response): failPayment finds the order PAID. The capture stands and the
   * saga completes the order; before this, the run failed and left the order PAID, refunded.
   */
  lateCaptureStands: 'late-capture-stands',
  /**
   * A cancel accepted while a step was in flight, whose step then ended the order another way (a
   * decline, no stock), is answered as refused ("too late: the order ended …"), not as accepted.
   */
  cancelAnswersOutcome: 'cancel-answers-outcome',
  /**
   * Compensations give money and stock back, so they wait out an outage (a gateway or database that
   * is down) for as long as it lasts, each failed attempt logged by the worker; only a failure that
   * retrying cannot fix (non-retryable) fails the run, naming it. Before this they gave up after 10
   * attempts (a few minutes), leaving a charge unvoided or stock held with the run failed.
   */
  compensationsWaitOutOutages: 'compensations-wait-out-outages',
  /**
   * A cancel accepted while the charge was in flight, which then the gateway declined: the order
   * ends PAYMENT_FAILED (the cancel is answered "too late"), but the customer's wish is kept on the
   * order (`cancel_requested_at`, set by the compensations), so no retry can charge it later. Before
   * this, a later retry (an operator's bulk retry after an outage) ran the order again.
   */
  declineKeepsCancel: 'decline-keeps-cancel',
} as const;

/** Retry and timeout profiles, named so a reader sees the intent of each call site. */
export const ACTIVITY_PROFILES = {
  /** Database steps: quick; a database outage is waited out with backoff, a bad status is final. */
  database: {
    startToCloseTimeout: '30 seconds',
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
    cancellationType: 'WAIT_CANCELLATION_COMPLETED',
  },
  /**
   * The gateway: transient failures retry with backoff with no attempt limit, because the payment
   * deadline (a durable timer in the workflow) is what bounds them. WAIT_CANCELLATION_COMPLETED: when
   * the deadline or a cancel stops the charge, the saga waits until the attempt has really ended, so
   * no capture can land after the compensations ran.
   */
  payment: {
    startToCloseTimeout: '30 seconds',
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
    cancellationType: 'WAIT_CANCELLATION_COMPLETED',
  },
  /**
   * Compensations: retried for a while, then reported. A compensation that cannot succeed fails the
   * workflow, naming it, rather than being swallowed. (Runs before PATCHES.compensationsWaitOutOutages.)
   */
  compensation: {
    startToCloseTimeout: '30 seconds',
    retry: {
      initialInterval: '1 second',
      backoffCoefficient: 2,
      maximumInterval: '1 minute',
      maximumAttempts: 10,
    },
    cancellationType: 'WAIT_CANCELLATION_COMPLETED',
  },
  /**
   * Compensations since PATCHES.compensationsWaitOutOutages: retried until they succeed, backing off
   * to one attempt every 5 minutes; a non-retryable failure still ends them at once.
   */
  compensationUntilDone: {
    startToCloseTimeout: '30 seconds',
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '5 minutes' },
    cancellationType: 'WAIT_CANCELLATION_COMPLETED',
  },
} as const satisfies Record<string, ActivityOptions>;

const db = proxyActivities<Activities>(ACTIVITY_PROFILES.database);
const gateway = proxyActivities<Activities>(ACTIVITY_PROFILES.payment);
const undoForAWhile = proxyActivities<Activities>(ACTIVITY_PROFILES.compensation);
const undoUntilDone = proxyActivities<Activities>(ACTIVITY_PROFILES.compensationUntilDone);

/** Thin entry point: handlers, then the steps. */
export async function orderSaga(input: OrderSagaInput): Promise<OrderSagaResult> {
  const saga = new OrderSaga(input);
  setHandler(statusQuery, () => saga.snapshot());
  setHandler(cancelUpdate, (request) => saga.cancel(request), {
    validator: (request) => saga.validateCancel(request),
  });
  try {
    return await saga.run();
  } finally {
    // An accepted cancel update answers once the saga has settled; let it reply before the run closes.
    await CancellationScope.nonCancellable(() => condition(allHandlersFinished));
  }
}

interface Compensation {
  name: string;
  run(undo: typeof undoUntilDone, reason: string, cancelled: boolean): Promise<unknown>;
}

type PaymentOutcome = { kind: 'captured' } | { kind: 'failed'; code: PaymentFailureCode; reason: string };

class OrderSaga {
  private readonly state: OrderSagaState;
  /** Undo actions, pushed before the step they undo runs, popped and run in reverse. */
  private readonly compensations: Compensation[] = [];
  /** The forward steps run in this scope; an accepted cancel update cancels it. */
  private readonly work = new CancellationScope();
  private cancelledByUpdate = false;
  private finished = false;

  constructor(private readonly input: OrderSagaInput) {
    this.state = {
      orderId: input.orderId,
      status: 'PENDING',
      step: 'RESERVING_INVENTORY',
      cancelRequested: false,
      compensationFailures: [],
    };
  }

  snapshot(): OrderSagaState {
    return { ...this.state, compensationFailures: [...this.state.compensationFailures] };
  }

  /**
   * Rejects a cancel before anything is written to history; runs in the update's validator. The
   * reason ends up in the database and an e-mail: text PostgreSQL cannot store would fail the
   * compensation that records it, so it is refused here, whoever sent it (the API checks it too).
   */
  validateCancel(request: CancelRequest): void {
    const problem = typeof request?.reason === 'string' ? textProblem(request.reason) : undefined;
    if (problem !== undefined || (request?.reason !== undefined && typeof request.reason !== 'string')) {
      throw ApplicationFailure.nonRetryable(
        `reason ${problem ?? 'must be a string'}`,
        FAILURE_TYPES.CancelRejected,
      );
    }
    const { status, step, cancelRequested } = this.state;
    if (cancelRequested || status === 'CANCELLED') return; // a repeated cancel gets the same answer
    const verdict = mayBeCancelledNow(status, { compensating: step === 'COMPENSATING' || step === 'DONE' });
    if (!verdict.ok) throw ApplicationFailure.nonRetryable(verdict.reason, FAILURE_TYPES.CancelRejected);
  }

  async cancel(request: CancelRequest): Promise<CancelAccepted> {
    if (!this.state.cancelRequested && this.state.status !== 'CANCELLED') {
      this.state.cancelRequested = true;
      this.cancelledByUpdate = true;
      this.state.reason = request.reason?.trim() || 'cancelled by the customer';
      log.info('cancel accepted', { orderId: this.input.orderId, reason: this.state.reason });
      this.work.cancel();
    }
    // Answer once the saga has settled, so the caller learns the outcome, not just the intent; a
    // workflow cancel arriving meanwhile ends the same way and must not fail this answer.
    await CancellationScope.nonCancellable(() => condition(() => this.finished));
    if (this.state.compensationFailures.length > 0) {
      throw ApplicationFailure.nonRetryable(
        `cancel accepted but not completed: ${this.state.compensationFailures.join('; ')}`,
        FAILURE_TYPES.CompensationFailed,
      );
    }
    // The step in flight decided first (a decline, no stock): the order ended, but not cancelled.
    if (this.state.status !== 'CANCELLED' && patched(PATCHES.cancelAnswersOutcome)) {
      throw ApplicationFailure.nonRetryable(
        `too late: the order ended ${this.state.status} before the cancel took effect`,
        FAILURE_TYPES.CancelRejected,
      );
    }
    return { accepted: true, status: this.state.status };
  }

  async run(): Promise<OrderSagaResult> {
    try {
      return await this.work.run(() => this.forward());
    } catch (err) {
      if (isCancellation(err)) return await this.onCancelled(err);
      // Only a forward step's failure: a compensation that failed must fail the run, naming it, even
      // when a cancel was requested meanwhile (else the leaked stock would hide behind "Cancelled").
      if (
        this.work.consideredCancelled &&
        this.state.compensationFailures.length === 0 &&
        patched(PATCHES.failedAttemptAfterCancel)
      ) {
        log.warn('a step failed after the cancel was requested; the cancel wins', {
          orderId: this.input.orderId,
          error: describe(err),
        });
        return await this.onCancelled(new CancelledFailure('cancelled while a step was in flight'));
      }
      // Unexpected failure of a step: undo what was done, then fail with the original error.
      if (this.state.compensationFailures.length === 0) {
        log.error('saga step failed; compensating', { orderId: this.input.orderId, error: describe(err) });
        await CancellationScope.nonCancellable(() =>
          this.compensate(`saga failed: ${describe(err)}`, { cancelled: false }),
        );
      }
      throw err;
    } finally {
      this.state.step = 'DONE';
      this.finished = true;
    }
  }

  private async forward(): Promise<OrderSagaResult> {
    // 1. Inventory. The release is registered first: a reservation that commits while this
    //    activity is being cancelled must still be given back.
    this.setStep('RESERVING_INVENTORY');
    this.compensations.push({
      name: 'releaseInventory',
      run: (undo, reason, cancelled) => undo.releaseInventory({ ...this.ids(), reason, cancelled }),
    });
    const reservation = await db.reserveInventory(this.ids());
    if (reservation.outcome === 'CANCELLED') {
      this.compensations.length = 0; // nothing was reserved
      return this.finish('CANCELLED', 'order-cancelled', 'cancelled before processing started');
    }
    if (reservation.outcome === 'OUT_OF_STOCK') {
      this.compensations.length = 0;
      const skus = reservation.unavailable.map((u) => u.sku).join(', ');
      return this.finish('OUT_OF_STOCK', 'out-of-stock', `out of stock: ${skus}`);
    }
    this.setStatus('RESERVED');
    await this.throwIfCancelled();

    // 2. Payment, raced against the deadline. The refund is registered first: a charge that
    //    completes while being cancelled is then refunded.
    this.setStep('CHARGING_PAYMENT');
    this.compensations.push({
      name: 'refundPayment',
      run: (undo, reason, cancelled) => undo.refundPayment({ ...this.ids(), reason, cancelled }),
    });
    const payment = await this.chargeBeforeDeadline();
    if (payment.kind === 'failed') {
      const failed = await this.paymentFailed(payment.code, payment.reason);
      if (failed !== 'captured after all') return failed;
    }
    this.setStatus('PAID');
    // A cancel accepted while the charge was in flight still wins: the capture is refunded.
    await this.throwIfCancelled();

    // 3. Paid: the order completes; a cancel is now "too late" and a workflow cancel waits for it.
    this.setStep('NOTIFYING');
    return CancellationScope.nonCancellable(async () => {
      await db.notifyCustomer({ ...this.ids(), kind: 'order-completed' });
      await db.completeOrder(this.ids());
      this.setStatus('COMPLETED');
      return { orderId: this.input.orderId, status: 'COMPLETED' };
    });
  }

  /**
   * Charges, unless the deadline (a durable timer, so it survives worker restarts and is skipped by
   * the time-skipping test server) passes first; then the charge is cancelled and the payment fails.
   * An attempt already in flight at the deadline is waited for (WAIT_CANCELLATION_COMPLETED): if it
   * captures after all, the capture stands and the order goes on to complete.
   */
  private async chargeBeforeDeadline(): Promise<PaymentOutcome> {
    const charge = new CancellationScope();
    const timer = new CancellationScope();
    let deadlinePassed = false;
    void timer
      // The summary is what the Web UI shows for the timer ("payment deadline 10m", not "1 (10m)").
      .run(() =>
        sleep(this.input.paymentDeadlineMs, {
          summary: `payment deadline ${humanDuration(this.input.paymentDeadlineMs)}`,
        }),
      )
      .then(
        () => {
          deadlinePassed = true;
          charge.cancel();
        },
        () => undefined, // the charge settled first (or the saga was cancelled): the timer was cancelled
      );
    try {
      await charge.run(() => gateway.chargePayment(this.ids()));
      return { kind: 'captured' };
    } catch (err) {
      const decline = declineReason(err);
      if (
        deadlinePassed &&
        !this.work.consideredCancelled &&
        (isCancellation(err) || (decline === undefined && patched(PATCHES.failedAttemptAfterCancel)))
      ) {
        return {
          kind: 'failed',
          code: 'DEADLINE_EXCEEDED',
          reason: `payment not captured within ${this.input.paymentDeadlineMs} ms`,
        };
      }
      if (decline !== undefined) return { kind: 'failed', code: 'DECLINED', reason: decline };
      throw err;
    } finally {
      timer.cancel();
    }
  }

  private async paymentFailed(
    code: PaymentFailureCode,
    reason: string,
  ): Promise<OrderSagaResult | 'captured after all'> {
    this.setStep('COMPENSATING');
    this.state.reason = reason;
    return CancellationScope.nonCancellable(async () => {
      const { status } = await db.failPayment({ ...this.ids(), code, reason });
      if (status === 'PAID') {
        if (patched(PATCHES.lateCaptureStands)) {
          this.state.reason = undefined;
          return 'captured after all';
        }
        // What failPayment itself threw before it reported PAID.
        throw ApplicationFailure.nonRetryable(
          `failPayment: order ${this.input.orderId} is PAID, which this step cannot act on`,
          FAILURE_TYPES.InvalidOrderStatus,
        );
      }
      this.setStatus('PAYMENT_FAILED');
      // The customer learns the payment failed even if a compensation then fails (an operator's job).
      await db.notifyCustomer({ ...this.ids(), kind: 'payment-failed', reason });
      const cancelled = this.state.cancelRequested && patched(PATCHES.declineKeepsCancel);
      await this.compensate(reason, { cancelled });
      return { orderId: this.input.orderId, status: 'PAYMENT_FAILED', reason };
    });
  }

  /** Cancelled by the update or by a workflow cancel: undo, mark CANCELLED, tell the customer. */
  private async onCancelled(err: unknown): Promise<OrderSagaResult> {
    const reason = this.state.reason ?? 'workflow cancelled';
    this.state.cancelRequested = true;
    this.state.reason = reason;
    // A saga that already reached an end has nothing to undo; a workflow cancel then just stops it.
    if (FINAL_STATUSES.has(this.state.status)) throw err;
    await CancellationScope.nonCancellable(async () => {
      await this.compensate(reason, { cancelled: true });
      await db.cancelOrder({ ...this.ids(), reason });
      this.setStatus('CANCELLED');
      await db.notifyCustomer({ ...this.ids(), kind: 'order-cancelled', reason });
    });
    if (this.cancelledByUpdate) return { orderId: this.input.orderId, status: 'CANCELLED', reason };
    throw err; // a workflow cancel ends the run as Cancelled, which is what the Web UI should show
  }

  /**
   * Runs the registered compensations in reverse. Every one runs even if an earlier one failed;
   * failures are recorded in the state, logged, and then fail the workflow naming them. `cancelled`:
   * the customer cancelled, which the order keeps (a retry then refuses to revive it).
   */
  private async compensate(reason: string, { cancelled }: { cancelled: boolean }): Promise<void> {
    this.setStep('COMPENSATING');
    const undo = patched(PATCHES.compensationsWaitOutOutages) ? undoUntilDone : undoForAWhile;
    for (let c = this.compensations.pop(); c; c = this.compensations.pop()) {
      try {
        await c.run(undo, reason, cancelled);
      } catch (err) {
        const failure = `${c.name}: ${describe(err)}`;
        this.state.compensationFailures.push(failure);
        log.error('compensation failed', {
          orderId: this.input.orderId,
          compensation: c.name,
          error: failure,
        });
      }
    }
    const failures = this.state.compensationFailures;
    if (failures.length > 0) {
      throw ApplicationFailure.nonRetryable(
        `order ${this.input.orderId}: compensation failed (${failures.join('; ')}); fix the cause, then re-drive the order`,
        FAILURE_TYPES.CompensationFailed,
        { failures },
      );
    }
  }

  /** Ends the saga at a business outcome that needs no undo, after telling the customer. */
  private async finish(
    status: Extract<OrderStatus, 'OUT_OF_STOCK' | 'CANCELLED'>,
    kind: activities.NotificationKind,
    reason: string,
  ): Promise<OrderSagaResult> {
    this.setStatus(status);
    this.state.reason = reason;
    await CancellationScope.nonCancellable(() => db.notifyCustomer({ ...this.ids(), kind, reason }));
    return { orderId: this.input.orderId, status, reason };
  }

  /**
   * Activities run with WAIT_CANCELLATION_COMPLETED, so a step cancelled mid-flight may still return
   * its result; this makes an accepted cancel win at the next step boundary.
   */
  private async throwIfCancelled(): Promise<void> {
    if (this.work.consideredCancelled) await this.work.cancelRequested;
  }

  /** What every step is called with: the order, this run of it, and its trace id. */
  private ids() {
    return { orderId: this.input.orderId, run: this.input.run ?? 1, correlationId: this.input.correlationId };
  }

  private setStep(step: SagaStep): void {
    this.state.step = step;
  }

  /** Mirrors the database status, and keeps the OrderStatus search attribute current for the Web UI. */
  private setStatus(status: OrderStatus): void {
    if (this.state.status === status) return;
    this.state.status = status;
    upsertSearchAttributes([{ key: SEARCH_ATTRIBUTES.OrderStatus, value: status }]);
    log.info('order status', { orderId: this.input.orderId, status });
  }
}

function declineReason(err: unknown): string | undefined {
  if (
    err instanceof ActivityFailure &&
    err.cause instanceof ApplicationFailure &&
    err.cause.type === FAILURE_TYPES.PaymentDeclined
  ) {
    return err.cause.message;
  }
  return undefined;
}

/** The useful message of a failure: an activity failure's own message only says "activity failed". */
function describe(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

/** `600000` → `10m`, `90000` → `1m30s`, `2500` → `2.5s`: short, for summaries in the Web UI. */
export function humanDuration(ms: number): string {
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0 || parts.length === 0) parts.push(`${rest / 1000}s`);
  return parts.join('');
}
