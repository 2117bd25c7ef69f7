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
  TimeoutFailure,
  allHandlersFinished,
  condition,
  isCancellation,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  type ActivityOptions,
  type LocalActivityOptions,
} from '@temporalio/workflow';
import type { SearchAttributeUpdatePair } from '@temporalio/common';
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
  type CompensationActivity,
  type FailureReason,
  type OrderSagaInput,
  type OrderSagaResult,
  type OrderSagaState,
  type SagaStep,
} from './contract.js';
import { FAILURE_TYPES, failureMessage } from './failures.js';

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
  /**
   * Fewer history events per order: the dev server's work grows with them, and it is most of the
   * machine's CPU per order (README "Performance"). One patch for three changes, because every
   * `patched()` call costs two events of its own (a marker and a TemporalChangeVersion upsert):
   * - OrderStatus is upserted when the order ends (with FailureReason, unless it completed) and when
   *   it starts waiting on a failing gateway; not at every intermediate status (RESERVED, PAID),
   *   which the status query and the order row show. Before: one upsert per status change.
   * - The two database steps of the happy path, reserveInventory and completeOrder, run as local
   *   activities: one marker event each instead of an activity task and a workflow task (six
   *   events). They keep the database profile's retry policy (an outage is waited out with backoff,
   *   each failed attempt logged by the worker); backoffs past LOCAL_RETRY_THRESHOLD become durable
   *   timers. The e-mail stays a regular activity: a real one calls a mail service, not PostgreSQL.
   * - The payment-deadline timer starts only when the first charge attempt fails transiently (most
   *   charges succeed at once; the timer's start and cancel were two events). The deadline keeps its
   *   meaning, counted from the start of the charge step: the timer is started for what is left of
   *   it, and the retries then race it as before (the first retry after the same 1 s backoff).
   */
  leanHistory: 'lean-history',
  /**
   * The customer's e-mail (every kind) is a local activity, like the other database steps: it only
   * records the message in `notifications`, once per order, run and kind (a mail sender would
   * deliver from that table, never the saga itself), so its retry semantics are those of a database
   * step. On the happy path the e-mail and completeOrder then run in the workflow task that follows
   * the charge: one workflow task and one activity task fewer per order (22 history events to 19,
   * this patch's own marker and upsert included).
   */
  notifyLocally: 'notify-locally',
  /**
   * The charge refuses when the customer's cancel is recorded on the order but this run never took
   * it (the update lost to an outage, so the API answered 503; or the run reset since): the saga then
   * cancels the order, compensating as for an accepted cancel. Before this, such a run charged the
   * customer who had asked to cancel. Only runs whose charge refused this way reach the patch.
   */
  recordedCancelStopsCharge: 'recorded-cancel-stops-charge',
  /**
   * A charge retry in flight when the payment deadline passed, which then refused because the
   * customer's cancel is recorded on the order (it waited on the order's row while the cancel was
   * being written): the cancel wins, as it does before the deadline (`recordedCancelStopsCharge`).
   * Before this the deadline won, and the order the customer had cancelled ended PAYMENT_FAILED.
   */
  recordedCancelBeatsDeadline: 'recorded-cancel-beats-deadline',
  /**
   * A new run's shape (`leanHistory` and `notifyLocally` together) under one patch instead of two:
   * every `patched()` call a run makes records a marker and a TemporalChangeVersion upsert, so the
   * second call cost every order two history events of no use (19 to 17 on the happy path). Runs
   * recorded under the two patches still replay down them: this one is asked first, and a history
   * without its marker answers no.
   */
  leanShape: 'lean-shape',
  /**
   * The payment deadline passed, but the customer's cancel was recorded on the order before it did
   * and this run never took it: failPayment, told when the deadline was decided, refuses
   * (CancelRequested), and the saga cancels the order as asked, in the recorded cancel's words, as
   * `recordedCancelBeatsDeadline` does for a charge retry. The case: a run reset after its deadline
   * (its timer fires at once, and no charge attempt asks the order). While failPayment decides, the
   * cancel update is accepted (`deadlineFailureUndecided`); one recorded after the decision is then
   * answered too late, and the payment fails as before.
   * Before this the order the customer had cancelled ended PAYMENT_FAILED. Every run whose deadline
   * passes reaches the patch.
   */
  deadlineYieldsToRecordedCancel: 'deadline-yields-to-recorded-cancel',
  /**
   * A cancel accepted while the step in flight decided otherwise (a decline, a payment that failed),
   * whose giving back then failed: the order ended PAYMENT_FAILED, and the cancel was never going to
   * be carried out, so it is answered "too late", as when nothing failed. Before this it was answered
   * "accepted but not completed" (the API's 500 cancel_incomplete: an operator would finish the
   * cancel), which no settlement or reset of a PAYMENT_FAILED order then does.
   */
  tooLateOverIncomplete: 'too-late-over-incomplete',
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
  /**
   * The first charge attempt since PATCHES.leanHistory: one attempt, no deadline timer yet.
   * A transient failure is then retried under `paymentRetry`, raced against the deadline.
   */
  paymentFirstAttempt: {
    startToCloseTimeout: '30 seconds',
    retry: { maximumAttempts: 1 },
    cancellationType: 'WAIT_CANCELLATION_COMPLETED',
  },
  /**
   * The charge's retries after a failed first attempt (since PATCHES.leanHistory): the
   * workflow waits the first 1 s backoff itself, so these start at 2 s and double, as the `payment`
   * profile's attempts 3, 4, … did.
   */
  paymentRetry: {
    startToCloseTimeout: '30 seconds',
    retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute' },
    cancellationType: 'WAIT_CANCELLATION_COMPLETED',
  },
} as const satisfies Record<string, ActivityOptions>;

/**
 * A local step's retries wait in the worker up to this backoff; longer ones (a database outage) are
 * durable timers, so a worker restart does not lose them and the workflow task is not held open.
 */
const LOCAL_RETRY_THRESHOLD = '10 seconds';

/** Local activity profiles (PATCHES.leanHistory). */
export const LOCAL_ACTIVITY_PROFILES = {
  /** The happy path's database steps: the `database` profile's retries, run by the worker. */
  database: {
    startToCloseTimeout: '10 seconds',
    retry: ACTIVITY_PROFILES.database.retry,
    localRetryThreshold: LOCAL_RETRY_THRESHOLD,
    cancellationType: 'WAIT_CANCELLATION_COMPLETED',
  },
} as const satisfies Record<string, LocalActivityOptions>;

/** What the Web UI's summary of each e-mail step says after `e-mail the customer: `. */
const NOTIFICATION_SUMMARIES: Record<activities.NotificationKind, string> = {
  'order-completed': 'order completed',
  'payment-failed': 'payment failed',
  'order-cancelled': 'order cancelled',
  'out-of-stock': 'out of stock',
};

/** The charge's first retry waits this long, as the `payment` profile's second attempt did. */
const FIRST_RETRY_BACKOFF_MS = 1_000;

/**
 * Activities of a profile, with the step's summary: what the Web UI shows on the activity instead
 * of its bare type name (summaries are user metadata, not part of the replayed commands).
 */
const regular = (profile: ActivityOptions, summary: string) =>
  proxyActivities<Activities>({ ...profile, summary });
const local = (profile: LocalActivityOptions, summary: string) =>
  proxyLocalActivities<Activities>({ ...profile, summary });
type Steps = ReturnType<typeof regular>;

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
  /** The activity it runs: `orders reset` finds a failed compensation in the history by it. */
  name: CompensationActivity;
  /** What the Web UI shows on the compensation's activity. */
  summary: string;
  run(undo: Steps, reason: string, cancelled: boolean): Promise<unknown>;
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
  /**
   * The deadline's failPayment is running: it, not this run's step, decides between the payment
   * failure and a cancel recorded on the order before the deadline was decided.
   */
  private deadlineFailureUndecided = false;
  /** The words of the cancel update accepted, if one was: what the order is cancelled with. */
  private cancelWords: string | undefined;
  /**
   * PATCHES.leanHistory (or .leanShape), decided once at the run's start (false when replaying a run
   * recorded before it, so that run keeps its shape).
   */
  private readonly lean: boolean;
  /** PATCHES.notifyLocally, decided once at the run's start like `lean`. */
  private readonly notifyLocally: boolean;
  /** How the payment failed, for the FailureReason search attribute (PATCHES.leanHistory). */
  private failureReason: FailureReason | undefined;
  /** FailureReason is set in the run's search attributes (so a completion clears it). */
  private failureReasonShown = false;

  constructor(private readonly input: OrderSagaInput) {
    const leanShape = patched(PATCHES.leanShape);
    this.lean = leanShape || patched(PATCHES.leanHistory);
    this.notifyLocally = leanShape || (this.lean && patched(PATCHES.notifyLocally));
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
    // The API records a cancel on the order before it asks here. One recorded before the deadline was
    // decided but asked after it still wins (failPayment refuses): accepted, the handler answers with
    // what failPayment decided (CANCELLED, or "too late" for a cancel recorded after the decision).
    if (this.deadlineFailureUndecided) return;
    const verdict = mayBeCancelledNow(status, { compensating: step === 'COMPENSATING' || step === 'DONE' });
    if (!verdict.ok) throw ApplicationFailure.nonRetryable(verdict.reason, FAILURE_TYPES.CancelRejected);
  }

  async cancel(request: CancelRequest): Promise<CancelAccepted> {
    if (!this.state.cancelRequested && this.state.status !== 'CANCELLED') {
      this.state.cancelRequested = true;
      this.cancelledByUpdate = true;
      this.state.reason = request.reason?.trim() || 'cancelled by the customer';
      this.cancelWords = this.state.reason;
      log.info('cancel accepted', { orderId: this.input.orderId, reason: this.state.reason });
      this.work.cancel();
    }
    // Answer once the saga has settled, so the caller learns the outcome, not just the intent; a
    // workflow cancel arriving meanwhile ends the same way and must not fail this answer.
    await CancellationScope.nonCancellable(() => condition(() => this.finished));
    const endedOtherwise = FINAL_STATUSES.has(this.state.status) && this.state.status !== 'CANCELLED';
    if (
      this.state.compensationFailures.length > 0 &&
      !(endedOtherwise && patched(PATCHES.tooLateOverIncomplete))
    ) {
      throw ApplicationFailure.nonRetryable(
        `cancel accepted but not completed: ${this.state.compensationFailures.join('; ')}`,
        FAILURE_TYPES.CompensationFailed,
        // The wording the saga was cancelling with, so the caller records the right cancel.
        { reason: this.state.reason },
      );
    }
    // The step in flight decided first (a decline, no stock): the order ended, but not cancelled.
    if (this.state.status !== 'CANCELLED' && patched(PATCHES.cancelAnswersOutcome)) {
      throw ApplicationFailure.nonRetryable(
        `too late: the order ended ${this.state.status} before the cancel took effect`,
        FAILURE_TYPES.CancelRejected,
      );
    }
    return { accepted: true, status: this.state.status, reason: this.state.reason };
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
          error: failureMessage(err),
        });
        return await this.onCancelled(new CancelledFailure('cancelled while a step was in flight'));
      }
      if (
        failureType(err) === FAILURE_TYPES.CancelRequested &&
        this.state.compensationFailures.length === 0 &&
        patched(PATCHES.recordedCancelStopsCharge)
      ) {
        log.warn('the customer asked to cancel (recorded on the order); cancelling instead of charging', {
          orderId: this.input.orderId,
        });
        this.state.cancelRequested = true;
        this.cancelledByUpdate = true; // the customer's request, not a workflow cancel: a CANCELLED result
        // The recorded cancel's own words (its code's wording; a run recorded before the charge
        // carried them has none, and keeps the generic words it used).
        this.state.reason ??= recordedCancelWording(err) ?? 'cancelled by the customer';
        return await this.onCancelled(new CancelledFailure('cancel recorded on the order'));
      }
      // Unexpected failure of a step: undo what was done, then fail with the original error.
      if (this.state.compensationFailures.length === 0) {
        log.error('saga step failed; compensating', {
          orderId: this.input.orderId,
          error: failureMessage(err),
        });
        await CancellationScope.nonCancellable(() =>
          this.compensate(`saga failed: ${failureMessage(err)}`, { cancelled: false }),
        );
      }
      this.showFailureReason(failureType(err));
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
      summary: 'compensation: release the stock',
      run: (undo, reason, cancelled) => undo.releaseInventory({ ...this.ids(), reason, cancelled }),
    });
    const reservation = await this.databaseStep('reserve stock', (a) => a.reserveInventory(this.ids()));
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
      summary: 'compensation: refund or void the payment',
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
      await this.notify('order-completed');
      await this.databaseStep('mark the order completed', (a) => a.completeOrder(this.ids()));
      this.setStatus('COMPLETED');
      return { orderId: this.input.orderId, status: 'COMPLETED' };
    });
  }

  /** E-mails the customer (records it, once per kind and run): local since PATCHES.notifyLocally. */
  private notify(kind: activities.NotificationKind, reason?: string): Promise<unknown> {
    const summary = `e-mail the customer: ${NOTIFICATION_SUMMARIES[kind]}`;
    const steps = this.notifyLocally
      ? local(LOCAL_ACTIVITY_PROFILES.database, summary)
      : regular(ACTIVITY_PROFILES.database, summary);
    return steps.notifyCustomer({ ...this.ids(), kind, ...(reason === undefined ? {} : { reason }) });
  }

  /** A database step of the happy path: a local activity since PATCHES.leanHistory. */
  private databaseStep<T>(summary: string, call: (a: Steps) => Promise<T>): Promise<T> {
    return call(
      this.lean
        ? local(LOCAL_ACTIVITY_PROFILES.database, summary)
        : regular(ACTIVITY_PROFILES.database, summary),
    );
  }

  /**
   * Charges, unless the payment deadline passes first; then the charge is cancelled and the payment
   * fails. The deadline is a durable timer (it survives worker restarts and is skipped by the
   * time-skipping test server) counted from the start of this step. Since
   * PATCHES.leanHistory the first attempt runs without it, and the timer starts, for what is
   * left of the deadline, only when that attempt failed transiently and retries begin.
   */
  private async chargeBeforeDeadline(): Promise<PaymentOutcome> {
    const deadlineMs = this.input.paymentDeadlineMs;
    if (!this.lean) {
      return this.chargeRacingDeadline(
        deadlineMs,
        regular(ACTIVITY_PROFILES.payment, 'charge the payment'),
        0,
      );
    }
    const startedAt = workflowNow();
    try {
      await regular(ACTIVITY_PROFILES.paymentFirstAttempt, 'charge the payment').chargePayment(this.ids());
      return { kind: 'captured' };
    } catch (err) {
      const decline = declineReason(err);
      if (decline !== undefined) return { kind: 'failed', code: 'DECLINED', reason: decline };
      // A cancel meanwhile, or a failure retrying cannot fix: handled as the old profile's were.
      if (this.work.consideredCancelled || !isTransient(err)) throw err;
      // The order now waits on the gateway: the Web UI shows it, with what the charge fails with.
      this.showStatus(failureType(err));
    }
    const leftMs = deadlineMs - (workflowNow() - startedAt);
    if (leftMs <= 0) return deadlineExceeded(deadlineMs);
    return this.chargeRacingDeadline(
      leftMs,
      regular(ACTIVITY_PROFILES.paymentRetry, 'charge the payment (retries until the deadline)'),
      FIRST_RETRY_BACKOFF_MS,
    );
  }

  /**
   * Charges through `charger`, after `backoffMs`, raced against a timer of `leftMs`. An attempt
   * already in flight at the deadline is waited for (WAIT_CANCELLATION_COMPLETED): if it captures
   * after all, the capture stands and the order goes on to complete.
   */
  private async chargeRacingDeadline(
    leftMs: number,
    charger: Steps,
    backoffMs: number,
  ): Promise<PaymentOutcome> {
    const deadlineMs = this.input.paymentDeadlineMs;
    const charge = new CancellationScope();
    const timer = new CancellationScope();
    let deadlinePassed = false;
    void timer
      // The summary is what the Web UI shows for the timer ("payment deadline 10m", not "1 (10m)").
      .run(() => sleep(leftMs, { summary: `payment deadline ${humanDuration(deadlineMs)}` }))
      .then(
        () => {
          deadlinePassed = true;
          charge.cancel();
        },
        () => undefined, // the charge settled first (or the saga was cancelled): the timer was cancelled
      );
    try {
      await charge.run(async () => {
        if (backoffMs > 0) await sleep(backoffMs, { summary: 'backoff before retrying the charge' });
        return charger.chargePayment(this.ids());
      });
      return { kind: 'captured' };
    } catch (err) {
      const decline = declineReason(err);
      if (
        deadlinePassed &&
        failureType(err) === FAILURE_TYPES.CancelRequested &&
        patched(PATCHES.recordedCancelBeatsDeadline)
      ) {
        throw err; // run() cancels the order, as the customer asked
      }
      if (
        deadlinePassed &&
        !this.work.consideredCancelled &&
        (isCancellation(err) || (decline === undefined && patched(PATCHES.failedAttemptAfterCancel)))
      ) {
        return deadlineExceeded(deadlineMs);
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
    this.failureReason = code;
    // A deadline yields to a cancel recorded before it was decided (failPayment refuses then).
    const yields = code === 'DEADLINE_EXCEEDED' && patched(PATCHES.deadlineYieldsToRecordedCancel);
    return CancellationScope.nonCancellable(async () => {
      let status: OrderStatus;
      this.deadlineFailureUndecided = yields;
      try {
        ({ status } = await regular(
          ACTIVITY_PROFILES.database,
          `record the payment failure: ${code}`,
        ).failPayment({
          ...this.ids(),
          code,
          reason,
          ...(yields ? { deadlineDecidedAt: workflowNow() } : {}),
        }));
      } catch (err) {
        if (yields && failureType(err) === FAILURE_TYPES.CancelRequested) {
          // Not a payment failure after all: run() cancels the order in the recorded cancel's words,
          // or in the words of the cancel update accepted meanwhile (the same cancel, asked late).
          // A workflow cancel meanwhile takes run()'s first branch, which has no error to read them from.
          this.state.reason = this.cancelWords ?? recordedCancelWording(err);
          this.failureReason = undefined;
        }
        throw err;
      } finally {
        this.deadlineFailureUndecided = false;
      }
      // A cancel accepted meanwhile (recorded after the decision) leaves the failure's words.
      this.state.reason = reason;
      if (status === 'PAID') {
        if (patched(PATCHES.lateCaptureStands)) {
          // A cancel accepted meanwhile still wins over the capture (refunded), in its own words.
          this.state.reason = this.cancelWords;
          this.failureReason = undefined;
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
      await this.notify('payment-failed', reason);
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
      await regular(ACTIVITY_PROFILES.database, 'mark the order cancelled').cancelOrder({
        ...this.ids(),
        reason,
      });
      this.setStatus('CANCELLED');
      await this.notify('order-cancelled', reason);
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
    const undo = patched(PATCHES.compensationsWaitOutOutages)
      ? ACTIVITY_PROFILES.compensationUntilDone
      : ACTIVITY_PROFILES.compensation;
    for (let c = this.compensations.pop(); c; c = this.compensations.pop()) {
      try {
        await c.run(regular(undo, c.summary), reason, cancelled);
      } catch (err) {
        const failure = `${c.name}: ${failureMessage(err)}`;
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
      this.showFailureReason(FAILURE_TYPES.CompensationFailed);
      throw ApplicationFailure.nonRetryable(
        `order ${this.input.orderId}: compensation failed (${failures.join('; ')}); fix the cause, then run it again: orders reset ${this.input.orderId} --closed --reason …`,
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
    await CancellationScope.nonCancellable(() => this.notify(kind, reason));
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

  /**
   * Mirrors the database status, and keeps the OrderStatus search attribute current for the Web UI:
   * at every change before PATCHES.leanHistory; since, when the order ends.
   */
  private setStatus(status: OrderStatus): void {
    if (this.state.status === status) return;
    this.state.status = status;
    if (!this.lean) {
      upsertSearchAttributes([{ key: SEARCH_ATTRIBUTES.OrderStatus, value: status }]);
    } else if (FINAL_STATUSES.has(status)) {
      this.showStatus(status === 'COMPLETED' ? null : (this.failureReason ?? (status as FailureReason)));
    }
    // Debug: every transition is logged at info by the activity that made it, with the order's ids;
    // a workflow log line crosses from the workflow sandbox to the worker's logger on the hot path.
    log.debug('order status', { orderId: this.input.orderId, status });
  }

  /**
   * One upsert: OrderStatus, and FailureReason when given (null clears it). Since
   * PATCHES.leanHistory only, so runs recorded before replay unchanged.
   */
  private showStatus(failure: FailureReason | null): void {
    if (!this.lean) return;
    const updates: SearchAttributeUpdatePair[] = [
      { key: SEARCH_ATTRIBUTES.OrderStatus, value: this.state.status },
    ];
    if (failure !== null || this.failureReasonShown) {
      updates.push({ key: SEARCH_ATTRIBUTES.FailureReason, value: failure });
      this.failureReasonShown = failure !== null;
    }
    upsertSearchAttributes(updates);
  }

  /** A run that fails says why in FailureReason (since PATCHES.leanHistory). */
  private showFailureReason(failure: FailureReason): void {
    if (!this.lean) return;
    this.failureReasonShown = true;
    upsertSearchAttributes([{ key: SEARCH_ATTRIBUTES.FailureReason, value: failure }]);
  }
}

/**
 * The workflow's clock: the time of the current workflow task, the same on every replay. The
 * deadline is counted from the charge step's start, which no workflowInfo() field records.
 */
function workflowNow(): number {
  // eslint-disable-next-line no-restricted-properties -- deterministic in workflow code (see above)
  return Date.now();
}

function deadlineExceeded(deadlineMs: number): PaymentOutcome {
  return {
    kind: 'failed',
    code: 'DEADLINE_EXCEEDED',
    reason: `payment not captured within ${deadlineMs} ms`,
  };
}

/** A failed attempt that a retry could fix (an outage, a timeout), not a decline or a refusal. */
function isTransient(err: unknown): boolean {
  if (!(err instanceof ActivityFailure)) return false;
  if (err.cause instanceof ApplicationFailure) return !err.cause.nonRetryable;
  return err.cause instanceof TimeoutFailure;
}

/** A bounded name for a failure, for FailureReason: its type when it is one of ours. */
function failureType(err: unknown): FailureReason {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof TimeoutFailure) return 'Timeout';
  const type = cause instanceof ApplicationFailure ? cause.type : undefined;
  const known = Object.values(FAILURE_TYPES) as string[];
  return type && known.includes(type) ? (type as FailureReason) : 'StepFailed';
}

/** The wording of the cancel recorded on the order, which a CancelRequested refusal carries. */
function recordedCancelWording(err: unknown): string | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (!(cause instanceof ApplicationFailure) || cause.type !== FAILURE_TYPES.CancelRequested)
    return undefined;
  const detail = cause.details?.[0] as { wording?: unknown } | undefined;
  return typeof detail?.wording === 'string' ? detail.wording : undefined;
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
