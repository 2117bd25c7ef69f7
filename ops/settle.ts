/**
 * `orders settle`: gives back what an ended order still holds when no run of it is left to do so.
 *
 * An order that ended without a sale (PAYMENT_FAILED, CANCELLED, OUT_OF_STOCK) while its run still
 * holds money (a payment CHARGING or CAPTURED) or stock: its compensations were stopped before they
 * finished (a run terminated by hand while one waited out an outage). `orders reconcile` lists it
 * (`money-held`, `stock-held`); `orders reset <id> --closed` re-runs the compensations only while
 * Temporal keeps the run's history. A settlement works with or without it: a workflow of its own
 * (workflows/settle-order.ts) under the order's workflow id runs the saga's own compensations for
 * the order's current run: the charge voided or refunded at the gateway by its key, the stock put
 * back, each with its event, each idempotent, visible in the Web UI beside the order's runs.
 *
 * An order whose run was stopped by hand mid-way (holding money or stock, never having begun to give
 * them back) and then forgotten by Temporal can be neither reset nor retried: `--forgotten-run`, the
 * operator's word that the run stopped for good, lets a settlement give back what it holds; the
 * order is then retried or cancelled like any failed run's.
 *
 * Rules (each refusal is an item with its reason, and the command exits 1): the domain's
 * (`maySettle`, domain/order.ts), judged under the order's row lock, held until Temporal has
 * answered the start: a retry asked for meanwhile waits for it, then sees the settlement's run open
 * and refuses; a second settlement sees it too.
 */
import { WorkflowFailedError, type Client } from '@temporalio/client';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import { cancelWording } from '../domain/cancel.js';
import { isFinal, maySettle, type OrderStatus } from '../domain/order.js';
import { noteProblem } from '../domain/text.js';
import { latestOrderRun, startSettlement, workflowUiUrl } from '../lib/temporal.js';
import { currentRunUndone, findOrder } from '../db/orders.js';
import { heldPayments } from '../db/payments.js';
import { holdLocksWhileIdle, withTransaction, type Pool } from '../db/pool.js';
import { orderWorkflowId, type SettleOrderInput, type SettleOrderResult } from '../workflows/contract.js';
import { DEFAULT_CONCURRENCY, mapBounded } from './batch.js';
import {
  UsageError,
  commandResult,
  noProgress,
  type CommandResult,
  type ItemResult,
  type Progress,
} from './result.js';
import { runFailureReason } from './run-failures.js';
import { parseOrderIds } from './select.js';

export interface SettleDeps {
  pool: Pool;
  client: Client;
  logger: Logger;
  /**
   * TEMPORAL_TASK_QUEUE: the worker's queue (a settlement's activities are the saga's); the Web UI
   * link in each item from the other two.
   */
  config: Pick<Config, 'TEMPORAL_TASK_QUEUE' | 'TEMPORAL_UI_URL' | 'TEMPORAL_NAMESPACE'>;
  progress?: Progress;
}

export interface SettleOptions {
  orderIds: readonly string[];
  /** Why (what was found at the gateway, who decided): kept with the refund and the release. */
  reason: string;
  /** Says what would be settled, changes nothing. */
  dryRun?: boolean;
  /**
   * The operator confirms that the run of an order Temporal no longer knows (forgotten after its
   * retention) stopped for good mid-way: such an order may be settled though its run never began to
   * give back (`maySettle`). Without it, such an order is refused with that advice.
   */
  forgottenRun?: boolean;
  /** How long to wait for each settlement's end before reporting it as under way; 0: do not wait. */
  waitMs?: number;
  concurrency?: number;
}

/**
 * How long Temporal may take to answer the start (the row lock is held meanwhile). A start not
 * answered by then may still have happened: the command run again finds its run open, or done.
 */
const START_DEADLINE_MS = 30_000;

export async function settleOrders(deps: SettleDeps, options: SettleOptions): Promise<CommandResult> {
  const reason = options.reason.trim();
  if (reason === '') throw new UsageError('--reason is empty: say what was found and who decided');
  // Kept in the events and shown in the Web UI: the rule for any note people read.
  const problem = noteProblem(reason);
  if (problem !== undefined) throw new UsageError(`--reason ${problem}`);
  const orderIds = parseOrderIds(options.orderIds);
  if (orderIds.length === 0) throw new UsageError('no orders selected: give one or more order ids');
  const progress = deps.progress ?? noProgress;
  progress.start(orderIds.length);
  const items = await mapBounded(
    orderIds,
    options.concurrency ?? DEFAULT_CONCURRENCY,
    (orderId) => settleOne(deps, { ...options, reason }, orderId),
    (item) => progress.advance(item),
  );
  return commandResult(options.dryRun ? 'settle --dry-run' : 'settle', items);
}

/** A settlement started: its run id, the order's run it settles, and what the order needs after. */
interface Started {
  runId: string;
  run: number;
  next: string | undefined;
}

async function settleOne(deps: SettleDeps, options: SettleOptions, orderId: string): Promise<ItemResult> {
  const workflowId = orderWorkflowId(orderId);
  try {
    const started = await decideAndStart(deps, options, orderId);
    if (!('runId' in started)) return started; // refused, not found, or a dry run
    deps.logger.info(
      { orderId, run: started.run, runId: started.runId, reason: options.reason },
      'settlement started',
    );
    return await follow(deps, orderId, started, options.waitMs ?? 0);
  } catch (err) {
    return {
      id: orderId,
      ok: false,
      outcome: 'failed',
      reason: runFailureReason(err, { orderId, workflowId }),
      details: { workflowId },
    };
  }
}

/**
 * Under the order's row lock, held until Temporal has answered: asks Temporal for the order's latest
 * run, applies the domain's rule, and starts the settlement (or says what it would do).
 */
async function decideAndStart(
  { pool, client, config }: SettleDeps,
  options: SettleOptions,
  orderId: string,
): Promise<ItemResult | Started> {
  return withTransaction(pool, async (tx) => {
    await holdLocksWhileIdle(tx, START_DEADLINE_MS + 15_000);
    const order = await findOrder(tx, orderId, { lock: true });
    if (!order) return { id: orderId, ok: false, outcome: 'not-found', reason: `no order ${orderId}` };
    const latest = await client.withDeadline(Date.now() + START_DEADLINE_MS, () =>
      latestOrderRun(client, orderId),
    );
    const held = await heldPayments(tx, orderId);
    const stockHeldBy = order.stock_held ? order.stock_run : null;
    const details = {
      workflowId: orderWorkflowId(orderId),
      status: order.status,
      run: order.run,
      heldPayments: held,
      stockHeldBy,
    };
    // A settlement already running (this command's own, started once before though its answer was
    // lost, or another operator's): say so, rather than "a run is open".
    if (latest?.open && latest.settlement)
      return {
        id: orderId,
        ok: false,
        outcome: 'refused',
        reason: `a settlement of this order is already running (${latest.runId}): follow it in the Web UI`,
        details: { ...details, settlementRunId: latest.runId },
      };
    const verdict = maySettle({
      status: order.status,
      run: order.run,
      runOpen: latest?.open ?? false,
      runUndone: currentRunUndone(order),
      heldPayments: held,
      stockHeldBy,
      cancelRequested: order.cancel_requested,
      // No execution at all, though the run was started: Temporal forgot it (a run not started yet
      // is the bridge's to start, never "forgotten").
      runForgotten: latest === undefined && (order.started_run ?? 0) >= order.run,
      forgottenRunConfirmed: options.forgottenRun ?? false,
    });
    if (!verdict.ok) return { id: orderId, ok: false, outcome: 'refused', reason: verdict.reason, details };
    // A cancel was asked (by its customer or an operator, even one refused then as too late: nothing
    // is sold now), and the order has not ended: once nothing is held, the settlement ends it CANCELLED.
    const finishesCancel = !isFinal(order.status) && order.cancel_requested;
    if (options.dryRun)
      return { id: orderId, ok: true, outcome: 'would-settle', details: { ...details, finishesCancel } };
    const input: SettleOrderInput = {
      orderId,
      correlationId: order.correlation_id,
      run: order.run,
      reason: options.reason,
      // The API records the request's code whatever the saga answered (or did not); an order without
      // one (a cancel asked before codes were kept) gets the neutral wording, which names nobody.
      ...(finishesCancel ? { cancel: { wording: cancelWording(order.cancel_code ?? 'other') } } : {}),
    };
    const { runId } = await client.withDeadline(Date.now() + START_DEADLINE_MS, () =>
      startSettlement(client, input, {
        taskQueue: config.TEMPORAL_TASK_QUEUE,
        customerId: order.customer_id,
        status: order.status,
        settles: latest?.sagaRunId,
      }),
    );
    return { runId, run: order.run, next: finishesCancel ? undefined : nextStep(orderId, order.status) };
  });
}

/** The item for a started settlement: waited for up to `waitMs` (0: not at all). */
async function follow(
  { client, config }: SettleDeps,
  orderId: string,
  started: Started,
  waitMs: number,
): Promise<ItemResult> {
  const workflowId = orderWorkflowId(orderId);
  const details = { workflowId, runId: started.runId, run: started.run, url: workflowUiUrl(config, orderId) };
  const next = started.next === undefined ? {} : { reason: started.next };
  if (waitMs <= 0) return { id: orderId, ok: true, outcome: 'started', ...next, details };
  let ended;
  try {
    ended = await waitForSettlement(client, workflowId, started.runId, waitMs);
  } catch (err) {
    // The settlement's failure says what failed and what to do (workflows/settle-order.ts).
    if (err instanceof WorkflowFailedError)
      return {
        id: orderId,
        ok: false,
        outcome: 'failed',
        reason: err.cause?.message ?? err.message,
        details,
      };
    // Started, but its end could not be followed (Temporal unreachable meanwhile): it goes on.
    return {
      id: orderId,
      ok: true,
      outcome: 'settling',
      reason: `started; its end could not be followed (${(err as Error).message}): follow it in the Web UI`,
      details,
    };
  }
  if (ended === undefined)
    return {
      id: orderId,
      ok: true,
      outcome: 'settling',
      reason:
        `still running after ${Math.round(waitMs / 1000)} s (a compensation waiting out an outage, or no worker ` +
        'polling): it goes on by itself; follow it in the Web UI',
      details,
    };
  return { id: orderId, ok: true, outcome: 'settled', ...next, details: { ...details, ...ended } };
}

/**
 * What the order needs once settled, when it has not ended and no cancel is being finished: its run
 * stopped while giving back what it holds (a failed run), so nothing else will end it.
 */
function nextStep(orderId: string, status: OrderStatus): string | undefined {
  if (isFinal(status)) return undefined;
  return (
    `once settled, the order is still ${status}${status === 'PAID' ? ' with its capture refunded' : ''}, ` +
    `holding nothing: orders retry ${orderId} runs it again, or its customer's cancel ends it`
  );
}

/** The settlement's result, or undefined if it has not ended within `waitMs`; its failure is thrown. */
async function waitForSettlement(
  client: Client,
  workflowId: string,
  runId: string,
  waitMs: number,
): Promise<Omit<SettleOrderResult, 'orderId' | 'run'> | undefined> {
  const handle = client.workflow.getHandle<() => Promise<SettleOrderResult>>(workflowId, runId);
  const stop = new AbortController();
  // Node fires a longer timer at once; a wait of 24 days is as good as forever here.
  const timer = setTimeout(() => stop.abort(), Math.min(waitMs, 2_147_483_647));
  try {
    const { money, stockReleased, skipped, cancelled } = await client.withAbortSignal(stop.signal, () =>
      handle.result(),
    );
    return { money, stockReleased, skipped, ...(cancelled ? { cancelled } : {}) };
  } catch (err) {
    if (stop.signal.aborted) return undefined;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
