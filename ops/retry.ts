/**
 * `orders retry`: runs a failed order again once the cause of its failure is fixed, as a new run of
 * the same workflow `order-<id>` (next to the failed one in the Web UI). The rule for which orders
 * qualify is the domain's (`mayBeRetried`, domain/order.ts): a payment that failed with no money
 * taken, or an order a failed run left unfinished; the write (order back to PENDING as run n+1, its
 * `order.retried` event in the outbox) is one transaction (db/order-retries.ts), and the bridge
 * starts the run from that event as it starts a new order. The API's POST /orders/{id}/retry calls
 * `retryOne` too.
 */
import type { Client } from '@temporalio/client';
import type { Logger } from '../lib/logger.js';
import { noteProblem } from '../domain/text.js';
import { latestOrderRun } from '../lib/temporal.js';
import { findOrder } from '../db/orders.js';
import { retryOrder, type RetryOutcome } from '../db/order-retries.js';
import type { Pool } from '../db/pool.js';
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
import { noneOurs, notOurs, selectRuns, type OrderSelection } from './select.js';
import { orderWorkflowId } from '../workflows/contract.js';

export interface RetryDeps {
  pool: Pool;
  client: Client;
  logger: Logger;
  progress?: Progress;
}

export interface RetryOptions {
  selection: OrderSelection;
  /** Why the order may run now (what was fixed); kept on the order and in the `order.retried` event. */
  reason: string;
  /** Says what would be retried, changes nothing. */
  dryRun?: boolean;
  concurrency?: number;
}

export async function retryOrders(deps: RetryDeps, options: RetryOptions): Promise<CommandResult> {
  // Kept on the order, where its customer reads it: the API's rule for a retry's reason, checked on
  // the very text that is stored.
  const reason = options.reason.trim();
  if (reason === '') throw new UsageError('--reason is empty: say what was fixed');
  const problem = noteProblem(reason);
  if (problem !== undefined) throw new UsageError(`--reason ${problem}`);
  const progress = deps.progress ?? noProgress;
  const runs = await selectRuns(deps.client, options.selection);
  // A query matches runs, and visibility keeps each run's own OrderStatus and FailureReason: a match
  // may be an earlier run of an order whose latest run no longer matches (its retry was DECLINED,
  // say, where the query asked for DEADLINE_EXCEEDED). Only orders whose latest run matched are
  // retried; an order with several matching runs is retried once.
  const matchedRuns = new Map<string, Set<string>>();
  for (const { orderId, runId } of runs) {
    if (runId !== undefined) matchedRuns.set(orderId, (matchedRuns.get(orderId) ?? new Set()).add(runId));
  }
  const orderIds = [...new Set(runs.map((r) => r.orderId))];
  progress.start(orderIds.length);
  const items = await mapBounded(
    orderIds,
    options.concurrency ?? DEFAULT_CONCURRENCY,
    async (orderId): Promise<ItemResult> => {
      const workflowId = orderWorkflowId(orderId);
      try {
        if ('query' in options.selection && !(await findOrder(deps.pool, orderId)))
          return notOurs({ orderId, workflowId });
        const matched = matchedRuns.get(orderId);
        const latest = matched ? await latestOrderRun(deps.client, orderId) : undefined;
        // A settlement is not a run of its own: the saga run it settled stands for it.
        if (matched && latest && !matched.has(latest.sagaRunId ?? latest.runId)) {
          return {
            id: orderId,
            ok: false,
            outcome: 'refused',
            reason:
              `the query matched an earlier run of this order, not its latest (run ${latest.run}, ` +
              `${latest.status}): not retried (by its id, the retry rules alone decide)`,
            details: { latestRunId: latest.runId, latestStatus: latest.status, matchedRunIds: [...matched] },
          };
        }
        return toItem(
          orderId,
          await retryOne(deps, orderId, { ...options, reason }),
          options.dryRun ?? false,
        );
      } catch (err) {
        const failure = runFailureReason(err, { orderId, workflowId });
        return { id: orderId, ok: false, outcome: 'failed', reason: failure };
      }
    },
    (item) => progress.advance(item),
  );
  return commandResult(options.dryRun ? 'retry --dry-run' : 'retry', noneOurs(items));
}

/** Retries one order: with its row locked, asks Temporal whether a run is open, then applies the rule. */
export async function retryOne(
  { pool, client, logger }: Pick<RetryDeps, 'pool' | 'client' | 'logger'>,
  orderId: string,
  { reason, dryRun = false }: { reason: string; dryRun?: boolean },
): Promise<RetryOutcome> {
  const outcome = await retryOrder(pool, orderId, {
    reason,
    latest: () => latestOrderRun(client, orderId), // asked under the order's row lock
    dryRun,
  });
  if (outcome.kind === 'retried' && !dryRun)
    logger.info({ orderId, run: outcome.run, reason }, 'order retried');
  return outcome;
}

function toItem(orderId: string, outcome: RetryOutcome, dryRun: boolean): ItemResult {
  switch (outcome.kind) {
    case 'retried':
      return {
        id: orderId,
        ok: true,
        outcome: dryRun ? 'would-retry' : 'retried',
        details: {
          run: outcome.run,
          previousStatus: outcome.previousStatus,
          workflowId: orderWorkflowId(orderId),
        },
      };
    case 'already_retrying':
      return {
        id: orderId,
        ok: true,
        outcome: 'already-retrying',
        reason: outcome.started
          ? `run ${outcome.run} is already under way (${outcome.status}); nothing more started`
          : `run ${outcome.run} has not started yet: the bridge starts it from its event, which is on its ` +
            'way (if that event was dead-lettered, `orders reconcile --fix` sends it again); nothing more started',
        details: { run: outcome.run, status: outcome.status, started: outcome.started },
      };
    case 'refused':
      return {
        id: orderId,
        ok: false,
        outcome: 'refused',
        reason: outcome.reason,
        details: { status: outcome.status },
      };
    case 'not_found':
      return { id: orderId, ok: false, outcome: 'not-found', reason: `no order ${orderId} in the database` };
  }
}
