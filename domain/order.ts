/**
 * The order's life as one state machine: its statuses, which may follow which, and the named rules
 * the API, the saga (its update validators) and the activities all ask. Pure and deterministic, so
 * workflow code imports it too; the guarded SQL in db/orders.ts takes its allowed "from" lists here.
 */
import { moneyIsHeld, type PaymentStatus } from './payment.js';

export const ORDER_STATUSES = [
  'PENDING',
  'RESERVED',
  'PAID',
  'COMPLETED',
  'OUT_OF_STOCK',
  'PAYMENT_FAILED',
  'CANCELLED',
] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

export type FinalStatus = Extract<OrderStatus, 'COMPLETED' | 'OUT_OF_STOCK' | 'PAYMENT_FAILED' | 'CANCELLED'>;
export const FINAL_STATUSES: ReadonlySet<OrderStatus> = new Set<FinalStatus>([
  'COMPLETED',
  'OUT_OF_STOCK',
  'PAYMENT_FAILED',
  'CANCELLED',
]);
export const isFinal = (status: OrderStatus): status is FinalStatus => FINAL_STATUSES.has(status);
/** The statuses of an order not yet ended: PENDING, RESERVED, PAID. */
export const UNFINISHED_STATUSES: readonly OrderStatus[] = ORDER_STATUSES.filter((s) => !isFinal(s));
/** Final statuses in which no money or stock may stay held: every one but COMPLETED. */
export const ENDED_WITHOUT_SALE: readonly FinalStatus[] = ['OUT_OF_STOCK', 'PAYMENT_FAILED', 'CANCELLED'];

/**
 * Which statuses each status may be entered from, unconditionally: `transitionOrder` (db/orders.ts)
 * moves an order only from one of these.
 */
export const TRANSITIONS: Readonly<Record<OrderStatus, readonly OrderStatus[]>> = {
  PENDING: [],
  RESERVED: ['PENDING'],
  OUT_OF_STOCK: ['PENDING'],
  PAID: ['RESERVED'],
  PAYMENT_FAILED: ['RESERVED'],
  COMPLETED: ['PAID'],
  CANCELLED: ['PENDING', 'RESERVED'],
};

/**
 * The transitions that hold only under a condition the status alone cannot show; each is taken by
 * its own guarded statement in db/orders.ts, which checks the condition in the same `where`.
 */
export const GUARDED_TRANSITIONS = {
  /** A charge completed while the cancel was under way, and the compensation refunded it. */
  refundedPaidToCancelled: { from: ['PAID'], to: 'CANCELLED', when: 'paidOrderMayBeCancelled' },
  /**
   * An operator's retry: the order runs again from the start, as a new run. From PAID only once its
   * run has given the money back (a run that failed after the charge and undid itself).
   */
  retry: { from: ['PENDING', 'RESERVED', 'PAYMENT_FAILED', 'PAID'], to: 'PENDING', when: 'mayBeRetried' },
} as const satisfies Record<string, { from: readonly OrderStatus[]; to: OrderStatus; when: string }>;

/** Whether the state machine has an edge from `from` to `to` at all (guarded or not). */
export function mayEnter(from: OrderStatus, to: OrderStatus): boolean {
  if (TRANSITIONS[to].includes(from)) return true;
  return Object.values(GUARDED_TRANSITIONS).some(
    (t) => t.to === to && (t.from as readonly OrderStatus[]).includes(from),
  );
}

/** PAID → CANCELLED: only when the capture of the order's current run was refunded. */
export function paidOrderMayBeCancelled(payment: PaymentStatus | undefined): boolean {
  return payment === 'REFUNDED';
}

/**
 * Whether the order's stock is sold: it is paid and the capture stands. A compensation never gives
 * sold stock back (a stray run of a completed order must not mint stock); an order whose capture was
 * refunded (cancelled while the charge completed) gives it back.
 */
export function stockIsSold(status: OrderStatus, payment: PaymentStatus | undefined): boolean {
  return status === 'COMPLETED' || (status === 'PAID' && payment !== 'REFUNDED');
}

/** A rule's answer: allowed, or refused with a reason written for the person who asked. */
export type Verdict = { ok: true } | { ok: false; reason: string };
const allowed: Verdict = { ok: true };
const refused = (reason: string): Verdict => ({ ok: false, reason });

/**
 * May the order be cancelled now? Once paid it is too late (the customer was charged and the order
 * goes on to completion); a final order cannot change. The saga's validator adds what only it knows
 * (`compensating`: it is already undoing the order). The API adds `runUndone`: a PAID order whose run
 * failed after the charge and began to give it back is no sale any more; with no run left, it is
 * cancelled in the database once the capture is refunded (`mayBeCancelledWithoutSaga`).
 */
export function mayBeCancelledNow(
  status: OrderStatus,
  { compensating = false, runUndone = false } = {},
): Verdict {
  if (status === 'PAID' && runUndone && !compensating) return allowed;
  if (status === 'PAID' || status === 'COMPLETED') return refused('too late: order is already paid');
  if (isFinal(status)) return refused(`too late: order has already ended (${status})`);
  // Not ended yet: its run is ending (a payment that failed, a step that failed) and giving back what
  // it held. What the order ends as is not known yet, so neither is whether a cancel could follow.
  if (compensating)
    return refused(
      `too late: the order's run is ending (the order is ${status}) and giving back what it held`,
    );
  return allowed;
}

/** What `mayBeCancelledWithoutSaga` needs to know about an order that no saga run is running. */
export interface DirectCancelFacts {
  status: OrderStatus;
  /** The current run's compensation has begun (`undo_run`): none of its forward steps acts again. */
  runUndone: boolean;
  /** The status of every payment intent of every run of the order. */
  payments: readonly PaymentStatus[];
}

/**
 * May the order be cancelled in the database, with no saga run to do it (the API asked Temporal and
 * none is running)? A PENDING order whose saga has not started, yes. A RESERVED or PAID order whose
 * run failed after undoing itself (its compensation began, so no forward step of it acts again), yes
 * once no money is held (a PAID one's capture refunded): otherwise nothing could ever end it, since a
 * retry refuses an order whose customer asked to cancel and a reset replays the same failure. Any
 * other RESERVED order holds stock that only its saga's compensation may give back, so it is never
 * cancelled behind the saga's back; any other PAID order is a sale its run finishes.
 */
export function mayBeCancelledWithoutSaga({ status, runUndone, payments }: DirectCancelFacts): Verdict {
  if (status === 'PENDING') return allowed;
  if (status !== 'RESERVED' && status !== 'PAID') return refused(`order is ${status}`);
  if (!runUndone) {
    return status === 'PAID'
      ? refused('too late: order is already paid')
      : refused(
          `The order is ${status} but its workflow is not running, so it cannot be cancelled now. Your ` +
            'request is kept: the order will not be charged, and it ends once an operator has its processing going again.',
        );
  }
  const held = payments.filter(moneyIsHeld);
  if (held.length > 0) {
    return refused(
      `The order still holds a payment (${held.join(', ')}) that its stopped run did not give back: ` +
        'an operator settles it (orders settle), which also finishes this cancel.',
    );
  }
  return allowed;
}

/** Recorded with a retry when the operator gives no reason. */
export const DEFAULT_RETRY_REASON = 'retried by an operator';

/**
 * A RESERVED order's status reason while its charge waits out a payment service it cannot reach
 * (until the charge is answered or the payment deadline passes): what its customer reads.
 */
export const WAITING_FOR_PAYMENT_REASON = 'waiting for the payment service to answer: retrying';

/**
 * The status reason of an order whose run failed and is giving back what it held (its compensation
 * began, not for a cancel, before the order ended): what its customer reads until an operator
 * retries or cancels it.
 */
export const RUN_STOPPED_REASON =
  'processing stopped after an error: what was reserved or charged is given back; the order will be resumed or cancelled';

/** A retried order's status reason until its new run moves it on: what its customer reads. */
export const RETRY_STATUS_REASON = 'retried: running again';

/** What `mayBeRetried` needs to know about an order. */
export interface RetryFacts {
  status: OrderStatus;
  /** Whether a saga run of the order is open (running) right now. */
  runOpen: boolean;
  /** The open run is a settlement (`orders settle`), giving back what the order holds. */
  settling?: boolean;
  /** The status of every payment intent of every run of the order. */
  payments: readonly PaymentStatus[];
  /** The customer asked to cancel the order (its cancel may not have finished, or was refused). */
  cancelRequested?: boolean;
  /** The customer's personal data was erased: they can no longer be told about a new run. */
  customerErased?: boolean;
  /** The current run's compensation has begun (`undo_run`): it took a cancel, if one was asked. */
  runUndone?: boolean;
}

/**
 * The shape of a customer id (a customer token's subject, the API's `customerId`): letters, digits and
 * `. _ : -`, so it is safe to quote in a Temporal visibility query.
 */
export const CUSTOMER_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

/** An order id: a UUID, any case (PostgreSQL prints it lower case). */
export const ORDER_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Orders an operator's retry never runs again: there is nothing to retry. */
export const NEVER_RETRIED: readonly OrderStatus[] = ['COMPLETED', 'CANCELLED', 'OUT_OF_STOCK'];

/**
 * May an operator run the order again? Yes for a payment that failed with no money taken, and for an
 * order left unfinished by a run that failed (a compensation that failed, a bad deploy; a PAID one
 * once that run has given its capture back): nothing is running for it and no money is held or of
 * unknown fate. Everything else is refused with the reason.
 * A retry starts a new run (its own charge key, events and notifications); stock still held by the
 * failed run is taken over by the new one, not reserved twice.
 */
export function mayBeRetried({
  status,
  runOpen,
  settling = false,
  payments,
  cancelRequested = false,
  customerErased = false,
  runUndone = false,
}: RetryFacts): Verdict {
  if (NEVER_RETRIED.includes(status)) return refused(`order is ${status}: there is nothing to retry`);
  if (runOpen && settling)
    return refused(
      'an operator is settling this order (giving back its money and stock); wait for that to end',
    );
  if (runOpen) return refused(`the order's run is still going (${status}); wait for it to end`);
  if (!(GUARDED_TRANSITIONS.retry.from as readonly OrderStatus[]).includes(status)) {
    return refused(`order is ${status}: a new run cannot start from there; reset its run instead`);
  }
  // A PAID order is retried only once its run failed and began to give back (refund, release): one
  // whose run stopped with the capture standing is a sale in progress, which its own run finishes.
  if (status === 'PAID' && !runUndone) {
    return refused(
      'order is PAID and its run never began to give the money back: its sale goes on; reset its run ' +
        '(orders reset <id> --closed --reason …) so it completes',
    );
  }
  if (cancelRequested) {
    // Only a run whose compensation began took the cancel: a settlement finishes it (ops/settle.ts).
    // Any other run resumes its forward steps after a reset; its charge refuses the recorded cancel
    // (PATCHES.recordedCancelStopsCharge) and the run cancels the order.
    return refused(
      `a cancel was asked for this order (${status}, by its customer or an operator): it is not run again. ` +
        (isFinal(status)
          ? payments.some(moneyIsHeld)
            ? 'It has ended holding money: orders settle <id> --reason … gives it back'
            : 'It has ended; the cancel stands as the reason it is not charged again'
          : runUndone
            ? 'If its cancel did not finish: holding no money, it is cancelled by POST /orders/<id>/cancel (its ' +
              'customer or an operator); holding money, orders settle <id> --reason … gives it back ' +
              'and finishes the cancel'
            : 'Its run never took the cancel: a reset (orders reset <id> --closed --reason …) resumes its forward ' +
              'steps, and a charge not made yet refuses the recorded cancel, so the run then cancels the order'),
    );
  }
  if (customerErased) {
    return refused(
      `the customer's personal data was erased (${status}): a new run would charge someone it can no ` +
        'longer e-mail; it is not run again',
    );
  }
  const held = payments.filter(moneyIsHeld);
  if (held.length > 0) {
    return refused(
      `a payment of this order is ${held.join(', ')}: money is held or its fate unknown; ` +
        'settle it before retrying (orders settle <id> --reason … gives it back; orders reset <id> --closed ' +
        "--reason … runs the run's compensation again while Temporal keeps the run)",
    );
  }
  return allowed;
}

/** What `maySettle` needs to know about an order. */
export interface SettleFacts {
  status: OrderStatus;
  run: number;
  /** Whether a run of the order (any workflow under its id) is open right now. */
  runOpen: boolean;
  /** The current run's compensation has begun (`undo_run`): the run was giving back what it holds. */
  runUndone: boolean;
  /** Every run's payment that holds money (CHARGING or CAPTURED). */
  heldPayments: ReadonlyArray<{ run: number; status: PaymentStatus }>;
  /** The run whose reservation still holds the order's stock, or null. */
  stockHeldBy: number | null;
  /** A cancel was asked for the order (its customer's or an operator's, taken by a run or not). */
  cancelRequested?: boolean;
  /**
   * Temporal has no execution under the order's workflow id at all, though its current run started
   * (`orders.started_run`): the run was forgotten after the namespace's retention (or this is not
   * the namespace the saga ran in, which only the operator can tell).
   */
  runForgotten?: boolean;
  /** The operator says the forgotten run stopped for good (`orders settle --forgotten-run`). */
  forgottenRunConfirmed?: boolean;
}

/**
 * May an operator settle the order (`orders settle`: its run's compensations run once more, as a
 * workflow of their own)? An order whose current run still holds money or stock, with no run open
 * that could still give them back, and which is done with them: it ended without a sale
 * (PAYMENT_FAILED, CANCELLED, OUT_OF_STOCK), or its run had begun to give them back (`undo_run`: a
 * cancel, or a failed run, whose compensation was stopped; the order stays RESERVED or PAID until
 * then). A completed order's sale stands; any other order is its run's to finish (retry or reset it),
 * unless that run is forgotten: stopped by hand mid-way and past Temporal's retention, it can be
 * neither reset nor retried (its money is held), so the operator who confirms it stopped may settle it
 * (the settlement's first step marks the run undone: nothing of it acts again).
 */
export function maySettle({
  status,
  run,
  runOpen,
  runUndone,
  heldPayments,
  stockHeldBy,
  cancelRequested = false,
  runForgotten = false,
  forgottenRunConfirmed = false,
}: SettleFacts): Verdict {
  if (status === 'COMPLETED')
    return refused('order is COMPLETED: its sale stands, there is nothing to give back');
  // Before the next rule: a running saga is not "stopped", and the advice there is for stopped runs.
  if (runOpen)
    return refused(`a run of the order is open: it may still give back what it holds; wait for it to end`);
  if (!isFinal(status) && !runUndone && !(runForgotten && forgottenRunConfirmed))
    return refused(
      `order is ${status} and its run never began to give back what it holds: it is not done with them; ` +
        (runForgotten
          ? `Temporal has no run of it (forgotten after the namespace's retention, or this is not the namespace ` +
            'it ran in), so it cannot be reset: if its run stopped for good, settle it with --forgotten-run'
          : cancelRequested
            ? 'its run never took the cancel asked for it: reset the run (orders reset <id> --closed --reason …), ' +
              'and its charge, refusing the recorded cancel, makes the run cancel the order'
            : 'retry it, or reset its run (orders reset <id> --closed), so the run goes on'),
    );
  const elsewhere = [
    ...heldPayments.filter((p) => p.run !== run).map((p) => `run ${p.run}'s payment is ${p.status}`),
    ...(stockHeldBy !== null && stockHeldBy !== run
      ? [`run ${stockHeldBy}'s reservation holds the stock`]
      : []),
  ];
  if (elsewhere.length > 0)
    return refused(
      `${elsewhere.join(' and ')}, not the current run ${run}'s: a settlement gives back only what the ` +
        "current run holds; settle that at the gateway by the charge's key, or put the stock back by hand",
    );
  if (heldPayments.length === 0 && stockHeldBy === null)
    return refused(`order is ${status} and holds no money and no stock: there is nothing to settle`);
  return allowed;
}
