/**
 * `orders reconcile`: finds orders whose pipeline stalled, says why, and with `fix` sets them going.
 *
 * An order not final and unchanged for `olderThanMs` is stalled unless its current run is open in
 * Temporal (a saga waiting out a payment deadline is not stalled). Why, and the fix:
 * - its run was never started and the event asking for it is unpublished: the outbox publisher is
 *   down or backing off: the event is made due now;
 * - the event was published but no run started (dead-lettered, or lost): it is sent again (same
 *   event id; the bridge starts the run once, whatever it receives). Unless messages still wait in
 *   the bridge's queue: in a backlog the event is most likely among them, so the order is reported
 *   `queued` (ok) and nothing is sent again, which would only lengthen the queue;
 * - the event is gone, or the run was started and is no longer running (it failed, was terminated,
 *   or Temporal forgot it): the order is retried as a new run if the domain allows it
 *   (`mayBeRetried`); otherwise the reason is reported (money held: reset the run instead);
 * - it ended without a sale (PAYMENT_FAILED, CANCELLED, OUT_OF_STOCK), or its run had begun to give
 *   back (a cancel, a failed run), with money still held or stock still reserved, and no run of it is
 *   open to give them back (its compensations were stopped: a run terminated while one waited out an
 *   outage): reported with the charge's key, never fixed here: `orders settle <id>` gives them back
 *   (ops/settle.ts), with or without the run's history.
 * Exit status (through `ok`): without `fix`, every stalled order found is an item that is not ok.
 */
import type { Client } from '@temporalio/client';
import type { ChannelModel } from 'amqplib';
import type { Logger } from '../lib/logger.js';
import { isFinal } from '../domain/order.js';
import { latestOrderRun, type LatestRun } from '../lib/temporal.js';
import { withTransaction, type Pool } from '../db/pool.js';
import { findStalledOrders, republishEvent, type StalledOrder } from '../db/reconcile.js';
import { DEFAULT_CONCURRENCY, mapBounded } from './batch.js';
import { commandResult, noProgress, type CommandResult, type ItemResult, type Progress } from './result.js';
import { queueState } from './dlq.js';
import { retryOne } from './retry.js';

export interface ReconcileDeps {
  pool: Pool;
  client: Client;
  logger: Logger;
  progress?: Progress;
  /**
   * The bridge's queue (`orders reconcile` passes it): how many messages wait there tells a backlog
   * from a lost event. Without it, every published event whose run did not start counts as stalled.
   */
  bridgeQueue?: { connection: () => Promise<ChannelModel>; queue: string };
  /**
   * The bridge's admission window (BRIDGE_MAX_RUNNING_SAGAS, 0: none): while as many sagas run as it
   * admits, the bridge holds the messages behind them unacknowledged, which the queue's count leaves
   * out. Without it, such an order looks lost.
   */
  bridgeWindow?: { maxRunning: number; countRunning: () => Promise<number> };
}

export interface ReconcileOptions {
  /** Orders unchanged for at least this long are looked at. */
  olderThanMs: number;
  fix?: boolean;
  /** At most this many orders per call. */
  limit?: number;
  concurrency?: number;
}

type Diagnosis =
  | { stalled: false; queued?: string }
  | {
      stalled: true;
      cause: 'unpublished' | 'not-started' | 'no-request' | 'run-ended' | 'money-held' | 'stock-held';
      reason: string;
      /** Temporal has no workflow of the order at all (its runs forgotten): nothing to reset. */
      forgotten?: boolean;
    };

export async function reconcileOrders(
  deps: ReconcileDeps,
  options: ReconcileOptions,
): Promise<CommandResult> {
  const progress = deps.progress ?? noProgress;
  const candidates = await findStalledOrders(deps.pool, {
    olderThanMs: options.olderThanMs,
    limit: options.limit ?? 1000,
  });
  progress.start(candidates.length);
  const waiting = candidates.length > 0 ? await bridgeBacklog(deps) : 0;
  const windowFull = candidates.length > 0 && (await bridgeWindowFull(deps));
  const items = await mapBounded(
    candidates,
    options.concurrency ?? DEFAULT_CONCURRENCY,
    async (order) => {
      try {
        const diagnosis = diagnose(order, await latestOrderRun(deps.client, order.id), waiting, windowFull);
        if (!diagnosis.stalled)
          return diagnosis.queued === undefined ? undefined : queuedItem(order, diagnosis.queued);
        if (!options.fix) return stalledItem(order, diagnosis);
        return await fix(deps, order, diagnosis);
      } catch (err) {
        return { id: order.id, ok: false, outcome: 'failed', reason: (err as Error).message };
      }
    },
    (item) => progress.advance(item ?? { id: '', ok: true, outcome: 'running' }),
  );
  return commandResult(
    options.fix ? 'reconcile --fix' : 'reconcile',
    items.filter((i) => i !== undefined),
  );
}

/** Messages waiting in the bridge's queue; 0 when unknown (no queue given, or it cannot be read). */
async function bridgeBacklog({ bridgeQueue, logger }: ReconcileDeps): Promise<number> {
  if (!bridgeQueue) return 0;
  try {
    return (await queueState(await bridgeQueue.connection(), bridgeQueue.queue))?.messages ?? 0;
  } catch (err) {
    logger.warn(
      { queue: bridgeQueue.queue, err: (err as Error).message },
      "cannot read the bridge's queue: a backlog there will look like lost events",
    );
    return 0;
  }
}

/** Whether the bridge's admission window is full now; false when unknown (not given, or no answer). */
async function bridgeWindowFull({ bridgeWindow, logger }: ReconcileDeps): Promise<boolean> {
  if (!bridgeWindow || bridgeWindow.maxRunning <= 0) return false;
  try {
    return (await bridgeWindow.countRunning()) >= bridgeWindow.maxRunning;
  } catch (err) {
    logger.warn(
      { err: (err as Error).message },
      'cannot count the running sagas: a full bridge window will look like lost events',
    );
    return false;
  }
}

/**
 * `waiting`: messages in the bridge's queue (a backlog the order's event may still be in);
 * `windowFull`: the bridge's admission window is full, so it holds more, unacknowledged.
 */
export function diagnose(
  order: StalledOrder,
  latest: LatestRun | undefined,
  waiting = 0,
  windowFull = false,
): Diagnosis {
  if (latest?.open && latest.run === order.run) return { stalled: false };
  const since = `since ${order.updatedAt}`;
  const held = order.heldPayment;
  // Ended, or its run was giving them back when it stopped and nothing will run it again (money in
  // doubt or a cancel asked refuses a retry): done with them. An undone run holding only stock, no
  // cancel asked, is retried below instead: the new run takes that stock over.
  const doneWithThem = isFinal(order.status) || (order.runUndone && (held !== null || order.cancelRequested));
  if (doneWithThem && (held || order.stockHeldBy !== null)) {
    // Any run still open may yet give them back (a compensation waiting out an outage): not stalled.
    if (latest?.open) return { stalled: false };
    const workflow = latest ? `its workflow is ${latest.status}` : 'Temporal has no workflow for it';
    const heldByEarlierRun =
      (held !== null && held.run !== order.run) ||
      (order.stockHeldBy !== null && order.stockHeldBy !== order.run);
    const what = [
      held && `run ${held.run}'s payment of ${held.amount} ${held.currency} is ${held.status}`,
      order.stockHeldBy !== null && `run ${order.stockHeldBy}'s reservation still holds its stock`,
    ].filter(Boolean);
    return {
      stalled: true,
      cause: held ? 'money-held' : 'stock-held',
      reason:
        `${order.status} ${since}, but ${what.join(' and ')}, and no run is giving them back (${workflow}): ` +
        (heldByEarlierRun
          ? // `orders settle` gives back only what the current run holds (maySettle).
            `not the current run ${order.run}'s: settle ${held ? `charge key ${held.chargeKey} at the gateway` : 'the stock'} by hand`
          : `\`orders settle ${order.id} --reason …\` gives ${held ? `them back (charge key ${held.chargeKey})` : 'it back'}`),
    };
  }
  if ((order.startedRun ?? 0) < order.run) {
    const request = order.request;
    if (!request)
      return {
        stalled: true,
        cause: 'no-request',
        reason: `run ${order.run} was never started and the event asking for it is gone`,
      };
    if (!request.published)
      return {
        stalled: true,
        cause: 'unpublished',
        reason: `its ${request.type} is unpublished ${since}${request.lastError ? ` (last error: ${request.lastError})` : ''}: is the outbox publisher running?`,
      };
    if (waiting > 0 || windowFull)
      return {
        stalled: false,
        queued:
          `its ${request.type} was published and run ${order.run} has not started ${since}, but ` +
          (waiting > 0
            ? `${waiting} message(s) still wait in the bridge's queue, most likely it among them`
            : "the bridge's admission window is full (BRIDGE_MAX_RUNNING_SAGAS sagas running): it holds the messages behind it, most likely this one") +
          ': not sent again (run reconcile once the backlog has drained)',
      };
    return {
      stalled: true,
      cause: 'not-started',
      reason: `its ${request.type} was published but run ${order.run} never started ${since}: dead-lettered or lost (see \`orders dlq show\`)`,
    };
  }
  return {
    stalled: true,
    cause: 'run-ended',
    reason: `run ${order.run} is not running (${latest ? `its workflow is ${latest.status}` : 'Temporal has no workflow for it'}) and left the order ${order.status} ${since}`,
    forgotten: latest === undefined,
  };
}

/** Not stalled: its event is most likely still in the bridge's backlog. */
function queuedItem(order: StalledOrder, reason: string): ItemResult {
  return {
    id: order.id,
    ok: true,
    outcome: 'queued',
    reason,
    details: { status: order.status, run: order.run },
  };
}

/** A stalled order as the listing shows it: why, and what ends it (what `--fix` would do, or not). */
function stalledItem(order: StalledOrder, diagnosis: Extract<Diagnosis, { stalled: true }>): ItemResult {
  return {
    id: order.id,
    ok: false,
    outcome: 'stalled',
    reason: `${diagnosis.reason}; ${nextStep(order, diagnosis)}`,
    details: { cause: diagnosis.cause, status: order.status, run: order.run },
  };
}

/** What ends a stalled order, as `fix` below decides it. */
function nextStep(order: StalledOrder, diagnosis: Extract<Diagnosis, { stalled: true }>): string {
  if (diagnosis.cause === 'money-held' || diagnosis.cause === 'stock-held') return '--fix leaves it';
  if ((diagnosis.cause === 'unpublished' || diagnosis.cause === 'not-started') && order.request)
    return '--fix sends its event again';
  if (order.status === 'PAID') return `not for --fix: ${paidNextStep(order, diagnosis)}`;
  return (
    `--fix retries it, as orders retry ${order.id} --reason … does (unless the retry rules refuse it: ` +
    "a cancel asked, the customer's data erased)"
  );
}

/**
 * A PAID order whose run stopped after the charge. Undone (the capture given back): a new run
 * charges the customer again, and again at every sweep if the step that failed still fails; not
 * undone: the sale stands and its own run finishes it. Either way an operator's decision.
 */
function paidNextStep(order: StalledOrder, diagnosis: Extract<Diagnosis, { stalled: true }>): string {
  if (order.runUndone)
    return (
      `its run failed after the charge and gave it back, so a new run charges the customer again; an ` +
      `operator decides (orders retry ${order.id} --reason …, or the customer cancels it)`
    );
  if (diagnosis.forgotten)
    return (
      `its run stopped after the charge, which stands, and Temporal has forgotten it, so it cannot be ` +
      `reset: orders settle ${order.id} --forgotten-run --reason … gives the capture and the stock back ` +
      `(then a retry, or the customer's cancel, ends it)`
    );
  return `its run stopped after the charge, which stands: orders reset ${order.id} --closed --reason … lets it complete`;
}

async function fix(
  deps: ReconcileDeps,
  order: StalledOrder,
  diagnosis: Extract<Diagnosis, { stalled: true }>,
): Promise<ItemResult> {
  const details = { cause: diagnosis.cause, status: order.status, run: order.run };
  if (diagnosis.cause === 'money-held' || diagnosis.cause === 'stock-held') {
    // Not a retry's to fix: a new run would take stock and charge again.
    return { id: order.id, ok: false, outcome: 'refused', reason: diagnosis.reason, details };
  }
  if ((diagnosis.cause === 'unpublished' || diagnosis.cause === 'not-started') && order.request) {
    const outboxId = order.request.outboxId;
    await withTransaction(deps.pool, (tx) => republishEvent(tx, outboxId));
    deps.logger.info({ orderId: order.id, event: order.request.type }, 'reconcile: event sent again');
    return { id: order.id, ok: true, outcome: 'republished', reason: diagnosis.reason, details };
  }
  if (order.status === 'PAID') {
    return {
      id: order.id,
      ok: false,
      outcome: 'refused',
      reason: `${diagnosis.reason}; not retried by --fix: ${paidNextStep(order, diagnosis)}`,
      details,
    };
  }
  const outcome = await retryOne(deps, order.id, { reason: `reconcile: ${diagnosis.reason}` });
  switch (outcome.kind) {
    case 'retried':
      return {
        id: order.id,
        ok: true,
        outcome: 'retried',
        reason: diagnosis.reason,
        details: { ...details, newRun: outcome.run },
      };
    case 'already_retrying':
      // Moved on since it was listed (a retry, or its run starting): nothing more to do, nothing done.
      return {
        id: order.id,
        ok: true,
        outcome: 'already-retrying',
        reason: `${diagnosis.reason}; run ${outcome.run} is already under way (${outcome.started ? 'running' : 'its event on its way to the bridge'}): nothing more started`,
        details: { ...details, run: outcome.run, started: outcome.started },
      };
    case 'refused':
      return {
        id: order.id,
        ok: false,
        outcome: 'refused',
        reason: `${diagnosis.reason}; cannot retry: ${outcome.reason}`,
        details,
      };
    case 'not_found':
      return { id: order.id, ok: false, outcome: 'not-found', reason: 'the order vanished meanwhile' };
  }
}
