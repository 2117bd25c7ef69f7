/**
 * `orders reset`: after a bad deploy, order sagas can be stuck on a workflow task that fails on
 * every attempt (a bug thrown from workflow code, a nondeterminism). Fixing the code and deploying
 * is enough when the bug only made tasks fail; when the bad code already completed tasks and
 * recorded commands the fixed code would not issue, those runs must be reset: Temporal terminates
 * the run and starts a new one from its history up to the reset point, which the fixed code
 * replays and continues.
 *
 * The same command gives a run whose compensation failed (`CompensationFailed`: stock still held, a
 * charge not refunded) another go at it, once the cause is fixed: replaying the failure from history
 * would only fail again, so such a run is reset to just before its first failed compensation, which
 * then runs again, followed by every compensation after it (each is idempotent for its run).
 *
 * Rules (each refusal is an item with its reason, and the command exits 1):
 * - The reset point is the workflow task that scheduled the run's first failed compensation, if one
 *   failed; otherwise the run's last completed workflow task (the last WORKFLOW_TASK_COMPLETED):
 *   that task and everything after it are run again by the current code. A run that never completed
 *   one is reset to its first workflow task, as the Temporal CLI's `FirstWorkflowTask` does.
 * - Only open runs, and only those whose last workflow task failed or timed out (stuck), unless
 *   `healthy` is set: resetting a healthy run re-runs its last step for nothing.
 * - Closed runs are refused unless `closed` is set. Temporal allows it and it is how a run that a
 *   bad deploy FAILED is given another chance, but it re-opens an order that looked finished.
 * - Not a settlement: the order's latest execution may be one (`orders settle`, ops/settle.ts),
 *   which has no saga run to reset; a failed one is started again.
 * - Only the current run of a workflow: resetting an older run (a query can match one) terminates
 *   the current run, which is never what was meant.
 * - Only a run of the order's current run number, checked under the order's row lock and held until
 *   Temporal answers: an operator's retry that moved the order on would otherwise have its new run
 *   terminated by the reset; a retry asked for meanwhile waits and then sees the re-opened run.
 * Signals and updates received after the reset point are re-applied (Temporal's default).
 */
import type { Client } from '@temporalio/client';
// A CommonJS module: its namespaces come through the default import under ESM.
import proto from '@temporalio/proto';
import type { Logger } from '../lib/logger.js';
import { grpcCode } from '../lib/temporal.js';
import { isFinal } from '../domain/order.js';
import { noteProblem } from '../domain/text.js';
import { currentRunUndone, findOrder, type OrderRow } from '../db/orders.js';
import { holdLocksWhileIdle, withTransaction, type Pool } from '../db/pool.js';
import { COMPENSATION_ACTIVITIES, SETTLE_WORKFLOW_TYPE } from '../workflows/contract.js';
import { DEFAULT_CONCURRENCY, mapBounded } from './batch.js';
import {
  UsageError,
  commandResult,
  noProgress,
  type CommandResult,
  type ItemResult,
  type Progress,
} from './result.js';
import { eventTypeName, isRunNotFound, runFailureReason } from './run-failures.js';
import { noneOurs, notOurs, selectRuns, type OrderSelection, type SelectedRun } from './select.js';

type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;
type ResetRequest = proto.temporal.api.workflowservice.v1.IResetWorkflowExecutionRequest;
const EventType = proto.temporal.api.enums.v1.EventType;

export interface ResetDeps {
  client: Client;
  /** The orders table: a reset holds the order's row lock while Temporal resets its run. */
  pool: Pool;
  logger: Logger;
  progress?: Progress;
}

export interface ResetOptions {
  selection: OrderSelection;
  /** Recorded on the terminated run and the new one: say what went wrong and which deploy fixed it. */
  reason: string;
  /** Also reset closed runs (completed, failed, terminated, …). */
  closed?: boolean;
  /** Also reset open runs that are not stuck (their last workflow task completed). */
  healthy?: boolean;
  /** Reports the reset point of each run without resetting anything. */
  dryRun?: boolean;
  /** Runs reset at once. */
  concurrency?: number;
}

export async function resetOrders(deps: ResetDeps, options: ResetOptions): Promise<CommandResult> {
  if (options.reason.trim() === '')
    throw new UsageError(
      'a reset needs a reason, kept in the history: --reason "<what broke, which deploy fixes it>"',
    );
  // Kept in the history and shown in the Web UI: the rule for any note people read.
  const problem = noteProblem(options.reason);
  if (problem !== undefined) throw new UsageError(`--reason ${problem}`);
  const progress = deps.progress ?? noProgress;
  const runs = await selectRuns(deps.client, options.selection);
  progress.start(runs.length);
  const items = await mapBounded(
    runs,
    options.concurrency ?? DEFAULT_CONCURRENCY,
    (run) => resetOne(deps, options, run),
    (item) => progress.advance(item),
  );
  return commandResult(options.dryRun ? 'reset --dry-run' : 'reset', noneOurs(items));
}

/** A run of `order-<id>` with no such order in this database: another environment's (tests sharing a namespace). */
const noSuchOrder = (orderId: string): string =>
  `no order ${orderId} in this database: the run belongs to another system sharing the namespace ` +
  '(another environment, a test); not reset';

const movedOn = (orderRun: number, executionRun: number): string =>
  `the order has moved on to run ${orderRun} (an operator's retry) and this execution is run ` +
  `${executionRun}: resetting it would terminate the new run; wait for the new run to start, then reset that`;

async function resetOne(
  { client, pool, logger }: ResetDeps,
  options: ResetOptions,
  run: SelectedRun,
): Promise<ItemResult> {
  const refuse = (reason: string, details: Record<string, unknown> = {}): ItemResult => ({
    id: run.orderId,
    ok: false,
    outcome: 'refused',
    reason,
    details: { workflowId: run.workflowId, ...details },
  });
  try {
    // Described first, at once: two operators resetting one stuck run both see that run, and the
    // second then refuses under the row lock (a database read first could queue behind the first
    // reset's lock for a pool connection, and then find its new run stuck too, and reset that).
    const current = await client.workflow.getHandle(run.workflowId).describe();
    // Whatever state its run is in, a run of an order this database does not have is not ours.
    const found = await findOrder(pool, run.orderId);
    if (!found)
      return 'query' in options.selection
        ? notOurs(run)
        : { ...refuse(noSuchOrder(run.orderId)), outcome: 'not-found' };
    const status = current.status.name;
    const base = { runId: current.runId, status };
    if (current.type === SETTLE_WORKFLOW_TYPE)
      return refuse(
        `the order's latest execution is a ${current.type} (${status}), not a run of its saga: there is no ` +
          'saga run to reset; a settlement that failed is started again with orders settle',
        { ...base, type: current.type },
      );
    if (run.runId && run.runId !== current.runId)
      return refuse(
        `run ${run.runId} is not the current run of ${run.workflowId} (that is ${current.runId}, ${status}): ` +
          'resetting it would terminate the current run; select the order by id to reset its current run',
        { runId: run.runId, currentRunId: current.runId, currentStatus: status },
      );
    if (status !== 'RUNNING' && !options.closed)
      return refuse(
        `the run is ${status}, not open: only open runs are reset (pass --closed to reset a closed run, ` +
          'which re-opens the order)',
        base,
      );

    const history = await client.workflow.getHandle(run.workflowId, current.runId).fetchHistory();
    const events = history.events ?? [];
    const point = resetPoint(events);
    if (!point?.eventId)
      return refuse(
        `no workflow task of this run has started yet, so there is nothing to reset: is a worker polling task queue ${current.taskQueue}?`,
        base,
      );
    const stuck = lastTaskFailed(events) || pendingAttempts(current.raw) > 1;
    if (status === 'RUNNING' && !stuck && !options.healthy)
      return refuse(
        'the run is not stuck (its last workflow task completed): resetting it would only run its last step again ' +
          '(pass --healthy to reset it anyway)',
        base,
      );

    const details = {
      workflowId: run.workflowId,
      previousRunId: current.runId,
      previousStatus: status,
      resetToEventId: Number(point.eventId),
      resetToEventType: eventTypeName(point.eventType),
      resetTo: point.why,
    };
    const executionRun = typeof current.memo?.run === 'number' ? current.memo.run : 1;
    if (options.dryRun) {
      // The real reset's check under the lock, made on the row read above: what it would refuse.
      if (found.run !== executionRun)
        return refuse(movedOn(found.run, executionRun), { ...base, orderRun: found.run, executionRun });
      return { id: run.orderId, ok: true, outcome: 'would-reset', ...whatAResetOfItDoes(found), details };
    }
    let lockedOrder: ResetFacts | undefined;

    // Temporal terminates the workflow's current run whichever run a reset names: a retry whose new
    // run starts between the describe above and the reset would be killed mid-step. The order's row
    // lock, held until Temporal answers, keeps a retry out (it takes the same lock, then sees the run
    // this reset re-opens); a retry that committed first has moved the order on, and is refused here.
    // Held however long Temporal takes (up to RESET_DEADLINE_MS, then RESET_CONFIRM_MS to learn
    // whether an unanswered reset happened): the session's idle-in-transaction limit would otherwise
    // end a slow reset's session and free the lock while the reset is out.
    const reset = await withTransaction(pool, async (tx) => {
      await holdLocksWhileIdle(tx, DESCRIBE_DEADLINE_MS + RESET_DEADLINE_MS + RESET_CONFIRM_MS + 20_000);
      const order = await findOrder(tx, run.orderId, { lock: true });
      if (!order) return refuse(noSuchOrder(run.orderId), base);
      // Asked again under the lock: a settlement (or another reset) started since the describe above
      // is now the workflow's current run, and Temporal's reset would terminate it.
      const now = await client.withDeadline(Date.now() + DESCRIBE_DEADLINE_MS, () =>
        client.workflow.getHandle(run.workflowId).describe(),
      );
      if (now.runId !== current.runId)
        return refuse(
          `the order's latest execution changed while this reset was being prepared (now a ${now.type}, ` +
            `${now.status.name}): run the command again to see it`,
          { ...base, currentRunId: now.runId, currentType: now.type },
        );
      if (order.run !== executionRun)
        return refuse(movedOn(order.run, executionRun), { ...base, orderRun: order.run, executionRun });
      lockedOrder = order;
      try {
        return await resetExecution(client, options.reason, run.workflowId, current.runId, point);
      } catch (err) {
        // Unanswered (our deadline, or the connection dropped): the server may still apply it, and a
        // reset applied after a retry's new run started would terminate that run. The lock stays
        // held until the reset shows, or has had time to.
        if (!isUnanswered(err)) throw err;
        const made = await resetRunOnceApplied(client, run.workflowId, current.runId);
        if (made === undefined) throw err;
        return made;
      }
    });
    if ('outcome' in reset) return reset;
    logger.info({ ...details, newRunId: reset.runId }, 'order saga reset');
    return {
      id: run.orderId,
      ok: true,
      outcome: 'reset',
      ...(lockedOrder ? whatAResetOfItDoes(lockedOrder) : {}),
      details: { ...details, newRunId: reset.runId },
    };
  } catch (err) {
    return {
      id: run.orderId,
      ok: false,
      outcome: isRunNotFound(err) ? 'not-found' : 'failed',
      reason: runFailureReason(err, run),
      details: { workflowId: run.workflowId },
    };
  }
}

/** The order's columns `whatAResetOfItDoes` reads. */
type ResetFacts = Pick<OrderRow, 'id' | 'run' | 'undo_run' | 'status' | 'cancel_requested'>;

/**
 * What a reset of a run that began to give back (`undo_run`) does to an order that has not ended,
 * said with the item, since the operator most likely reset it to finish the order: its forward steps
 * refuse (RunUndone), so the reset run can only give back again (what a run whose compensation
 * failed needs) and end without a sale; then `orders retry` runs the order again, or, a cancel
 * asked for it, `orders settle` finishes the cancel.
 */
function whatAResetOfItDoes(order: ResetFacts): { reason?: string } {
  if (!currentRunUndone(order) || isFinal(order.status)) return {};
  return {
    reason:
      `run ${order.run} had begun to give back what the order held, so the reset run cannot complete it ` +
      `(its forward steps refuse): it only finishes giving back, and fails unless a cancel ends it; ` +
      (order.cancel_requested
        ? `a cancel was asked for it, so once the run has ended, orders settle ${order.id} --reason … finishes it`
        : `to run the order again, orders retry ${order.id} --reason … once it has ended`),
  };
}

/**
 * How long Temporal may take to answer a reset. Unanswered, the reset may still happen: the command
 * keeps the order's row lock while it watches for the run it would make (RESET_CONFIRM_MS), reports
 * the reset done if that run shows, and failed otherwise. Look at the run then (the Web UI, or the
 * command again with --dry-run) before resetting again, since a second reset would name the new run.
 */
const RESET_DEADLINE_MS = 30_000;

/** After a reset went unanswered, how long to watch for the run it makes before giving up on it. */
const RESET_CONFIRM_MS = 30_000;
/** Each describe made while the order's row is locked (the lock's idle limit counts them). */
const DESCRIBE_DEADLINE_MS = 5_000;

const isUnanswered = (err: unknown): boolean => {
  const code = grpcCode(err);
  return code === 1 || code === 4 || code === 14; // gRPC CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE
};

/**
 * The run an unanswered reset of `baseRunId` made, once the workflow's current run is another (the
 * reset's: a retry cannot have started one, its lock being held); undefined if none shows within
 * RESET_CONFIRM_MS.
 */
async function resetRunOnceApplied(
  client: Client,
  workflowId: string,
  baseRunId: string,
): Promise<{ runId: string } | undefined> {
  const deadline = Date.now() + RESET_CONFIRM_MS;
  while (Date.now() < deadline) {
    try {
      const { runId } = await client.withDeadline(Date.now() + DESCRIBE_DEADLINE_MS, () =>
        client.workflow.getHandle(workflowId).describe(),
      );
      if (runId !== baseRunId) return { runId };
    } catch (err) {
      if (!isUnanswered(err)) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  return undefined;
}

/** Temporal's reset of one run to `point`; answers the new run's id. */
async function resetExecution(
  client: Client,
  reason: string,
  workflowId: string,
  runId: string,
  point: ResetPoint,
): Promise<{ runId: string }> {
  const { runId: newRunId } = await client.withDeadline(
    Date.now() + RESET_DEADLINE_MS,
    () =>
      client.workflowService.resetWorkflowExecution({
        namespace: client.options.namespace,
        workflowExecution: { workflowId, runId },
        reason,
        // The event's own id handed back as decoded (protobufjs encodes a Long or a number alike).
        workflowTaskFinishEventId: point.eventId as unknown as ResetRequest['workflowTaskFinishEventId'],
        // One id per base run: the client's own retries of this RPC, and a second operator who read
        // the same run before this reset, get the run this reset made (Temporal dedups a reset whose
        // id created the current run) instead of terminating it for another.
        requestId: `reset-of-${runId}`,
        identity: client.options.identity,
      }) as Promise<proto.temporal.api.workflowservice.v1.IResetWorkflowExecutionResponse>,
  );
  return { runId: newRunId ?? '' };
}

export interface ResetPoint {
  eventId: number;
  eventType: number;
  /** Why this event, for the operator: which compensation runs again, or which task. */
  why: string;
}

/**
 * The workflow task that scheduled the first compensation that failed, if one did; otherwise the
 * last WORKFLOW_TASK_COMPLETED; without one, the first WORKFLOW_TASK_STARTED (a run whose every
 * task failed, the bug being in its first step).
 */
export function resetPoint(events: readonly HistoryEvent[]): ResetPoint | undefined {
  const undo = firstFailedCompensation(events);
  if (undo) return undo;
  const ofType = (type: number) => events.filter((e) => e.eventType === type);
  const completed = ofType(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED).at(-1);
  const point = completed ?? ofType(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)[0];
  if (!point?.eventId || point.eventType == null) return undefined;
  return {
    eventId: Number(point.eventId),
    eventType: point.eventType,
    why: completed ? 'the last completed workflow task' : 'the first workflow task',
  };
}

/**
 * A compensation that failed for good (its retries exhausted or a non-retryable error) is recorded
 * as ACTIVITY_TASK_FAILED (or TIMED_OUT) of one of COMPENSATION_ACTIVITIES; the point to reset to is
 * the workflow task that scheduled it, so the new run schedules it again.
 */
function firstFailedCompensation(events: readonly HistoryEvent[]): ResetPoint | undefined {
  const scheduled = new Map<number, HistoryEvent>();
  for (const event of events) {
    if (event.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
      scheduled.set(Number(event.eventId), event);
    const ended =
      event.activityTaskFailedEventAttributes?.scheduledEventId ??
      event.activityTaskTimedOutEventAttributes?.scheduledEventId;
    if (ended == null) continue;
    const attributes = scheduled.get(Number(ended))?.activityTaskScheduledEventAttributes;
    const activity = attributes?.activityType?.name ?? '';
    const byTask = Number(attributes?.workflowTaskCompletedEventId ?? 0);
    if (!(COMPENSATION_ACTIVITIES as readonly string[]).includes(activity) || byTask <= 0) continue;
    return {
      eventId: byTask,
      eventType: EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
      why: `just before the failed compensation ${activity} (event ${Number(ended)}), which runs again`,
    };
  }
  return undefined;
}

/** The last workflow task of the history failed or timed out: a task that keeps failing shows so. */
function lastTaskFailed(events: readonly HistoryEvent[]): boolean {
  const outcomes = new Set<number>([
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
  ]);
  const last = events.filter((e) => e.eventType != null && outcomes.has(e.eventType)).at(-1);
  return last != null && last.eventType !== EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED;
}

/** Attempts of the workflow task in flight: above 1, it has failed before (failures after the first are not in history). */
function pendingAttempts(
  raw: proto.temporal.api.workflowservice.v1.IDescribeWorkflowExecutionResponse,
): number {
  return raw.pendingWorkflowTask?.attempt ?? 0;
}
