/**
 * An operator's retry of a failed order: in one transaction the order moves back to PENDING as a new
 * run and its `order.retried` event goes into the outbox, so the bridge starts the new run from that
 * event exactly as it starts a new order's, and a retry survives any crash the same way.
 */
import {
  GUARDED_TRANSITIONS,
  RETRY_STATUS_REASON,
  isFinal,
  mayBeRetried,
  type OrderStatus,
} from '../domain/order.js';
import { buildEvent, runEventId } from '../lib/events.js';
import { currentRunUndone, findOrder, type OrderRow } from './orders.js';
import { enqueueEvent } from './outbox.js';
import { paymentStatuses } from './payments.js';
import { withTransaction, type Pool, type Queryable } from './pool.js';

/** What Temporal says of the order's latest run (lib/temporal.ts latestOrderRun). */
export interface LatestRunFacts {
  run: number;
  open: boolean;
  /** A settlement (`orders settle`) under the order's id: open, it is no run under way. */
  settlement?: boolean;
}

export type RetryOutcome =
  /** A new run was set going (or, with `dryRun`, would be). */
  | { kind: 'retried'; run: number; previousStatus: OrderStatus }
  /**
   * A run is already under way (a retry's, or the first): waiting to be started (`started` false:
   * its event is on its way to the bridge), or running. Nothing more.
   */
  | { kind: 'already_retrying'; run: number; status: OrderStatus; started: boolean }
  | { kind: 'refused'; reason: string; status: OrderStatus }
  | { kind: 'not_found' };

/**
 * A run of the order that the bridge has not started yet, or that is running now. A run not started
 * is waiting while the event asking for it is (`order.placed` for run 1, its `order.retried` after:
 * in the outbox, or queued behind a backlog at the bridge): a retry then would make another run of an
 * order nothing failed, and the bridge's a stale one. That event gone (`orders reconcile` finds such
 * an order; pruning keeps an unfinished order's rows, so it was deleted by hand), nothing will start
 * the run: a retry may.
 */
function runUnderWay(order: OrderRow, latest: LatestRunFacts | undefined, runRequested: boolean): boolean {
  if ((order.started_run ?? 0) < order.run) return runRequested;
  // Running: a retry's run is "already retrying"; the first run is no retry (the rule refuses it).
  return order.run > 1 && latest?.open === true && latest.run === order.run && latest.settlement !== true;
}

/** Whether the event that asks the bridge for the order's current run is still in the outbox. */
async function hasRunRequest(tx: Queryable, order: OrderRow): Promise<boolean> {
  const { rows } = await tx.query<{ requested: boolean }>(
    order.run === 1
      ? `select exists (select 1 from event_outbox where order_id = $1::uuid and type = 'order.placed') as requested`
      : `select exists (select 1 from event_outbox where event_id = $1::uuid) as requested`,
    [order.run === 1 ? order.id : runEventId(order.id, order.run, 'order.retried')],
  );
  return rows[0]?.requested === true;
}

/**
 * What Temporal says of the order's latest run: the answer, or how to ask (then asked once the
 * order's row is locked, so the answer still holds when the retry commits: `orders reset` holds the
 * same lock while it re-opens a run, so a run it re-opens is seen here as open, and a retry that
 * commits first is seen there).
 */
export type LatestRunSource = LatestRunFacts | undefined | (() => Promise<LatestRunFacts | undefined>);

/** Retries the order if the domain allows it (`mayBeRetried`); an open latest run refuses it. */
export async function retryOrder(
  pool: Pool,
  orderId: string,
  { reason, latest: source, dryRun = false }: { reason: string; latest: LatestRunSource; dryRun?: boolean },
): Promise<RetryOutcome> {
  return withTransaction(pool, async (tx) => {
    const order = await findOrder(tx, orderId, { lock: true });
    if (!order) return { kind: 'not_found' };
    const latest = typeof source === 'function' ? await source() : source;
    // A run that ended the order (COMPLETED, PAYMENT_FAILED, …) is not under way even while Temporal
    // lists it as open: visibility trails a completion by a moment, and a failed run stays open while
    // its compensation waits out a gateway outage. "Already retrying" would answer 202 for nothing;
    // the domain judges it instead (refused: final, or its run still going).
    if (
      !isFinal(order.status) &&
      runUnderWay(order, latest, (order.started_run ?? 0) < order.run && (await hasRunRequest(tx, order)))
    )
      return {
        kind: 'already_retrying',
        run: order.run,
        status: order.status,
        started: (order.started_run ?? 0) >= order.run,
      };
    const verdict = mayBeRetried({
      status: order.status,
      runOpen: latest?.open ?? false,
      settling: latest?.open === true && latest.settlement === true,
      payments: await paymentStatuses(tx, orderId),
      cancelRequested: order.cancel_requested,
      customerErased: order.erased,
      runUndone: currentRunUndone(order),
    });
    if (!verdict.ok) return { kind: 'refused', reason: verdict.reason, status: order.status };
    const run = order.run + 1;
    if (!dryRun) await startNewRun(tx, order, run, reason);
    return { kind: 'retried', run, previousStatus: order.status };
  });
}

async function startNewRun(tx: Queryable, order: OrderRow, run: number, reason: string): Promise<void> {
  const { from, to } = GUARDED_TRANSITIONS.retry;
  const { rowCount } = await tx.query(
    // Stock a failed run still holds passes to the new run here, so that whatever happens next (the
    // new run's reservation, a cancel before it starts) finds it held by the order's current run.
    `update orders set status = $3, run = $4, status_reason = $5, reservation = null, updated_at = now(),
            stock_run = case when stock_reserved_at is not null and stock_released_at is null then $4 else stock_run end
     where id = $1::uuid and run = $2 and status = any($6::text[])`,
    // The status reason is the customer's to read (GET /orders/:id): fixed wording, never the
    // operator's own text, which goes to operators only (the command's answer, order.retried).
    [order.id, order.run, to, run, RETRY_STATUS_REASON, from],
  );
  if (rowCount !== 1) throw new Error(`retry of order ${order.id}: it changed under its row lock`);
  await enqueueEvent(
    tx,
    buildEvent('order.retried', {
      id: runEventId(order.id, run, 'order.retried'),
      orderId: order.id,
      correlationId: order.correlation_id,
      data: { run, customerId: order.customer_id, previousStatus: order.status, reason },
    }),
  );
}
