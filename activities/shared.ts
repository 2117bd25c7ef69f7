/**
 * Pieces every activity group uses: the argument shape, the guard every effect starts with, typed
 * failures and the per-order logger.
 *
 * Idempotency rule for every activity here: what a step did is recorded with the order, keyed by the
 * saga run (the order's status and run, its stock markers and reservation record, the run's payment
 * intent, its notifications), and its event id is derived from the order, the run and the event type
 * (`runEventId`). A retried attempt, a reset run or a stray run of the same run finds that record and
 * answers from it; it writes no second row and no second event.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { OrderStatus } from '../domain/order.js';
import type { Logger } from '../lib/logger.js';
import { findOrder, type OrderRow } from '../db/orders.js';
import type { Queryable } from '../db/pool.js';
import { orderWorkflowId } from '../workflows/contract.js';
import { FAILURE_TYPES } from '../workflows/failures.js';

export { FAILURE_TYPES };

/** What identifies one saga step: the order, its run, and its trace id. */
export interface StepArgs {
  orderId: string;
  correlationId: string;
  /** The saga run (OrderSagaInput.run). Absent in steps scheduled before runs were numbered: run 1. */
  run?: number;
}

export const runOf = (args: Pick<StepArgs, 'run'>): number => args.run ?? 1;

/**
 * The workflow calling this activity, when called by Temporal (a test may call an activity directly).
 * Read from the activity's context, which the server fills in: a caller cannot choose it.
 */
function callingWorkflowId(): string | undefined {
  try {
    return Context.current().info.workflowExecution?.workflowId;
  } catch {
    return undefined; // not inside an activity
  }
}

/**
 * The order, locked, after checking that this step belongs to it: called by the order's own workflow
 * `order-<id>` (not a run started by hand under another id), for an order that exists. Whether the
 * step's run is the order's current one is the caller's to check (`isCurrentRun`), because forward
 * steps refuse a stale run and compensations only decline to undo what is not theirs.
 */
export async function lockOrderFor(db: Queryable, args: StepArgs, step: string): Promise<OrderRow> {
  const caller = callingWorkflowId();
  if (caller !== undefined && caller !== orderWorkflowId(args.orderId)) {
    throw ApplicationFailure.nonRetryable(
      `${step}: called by workflow ${caller}, not by the order's own ${orderWorkflowId(args.orderId)}; changing nothing`,
      FAILURE_TYPES.ForeignWorkflow,
      { orderId: args.orderId, caller },
    );
  }
  const order = await findOrder(db, args.orderId, { lock: true });
  if (!order) {
    throw ApplicationFailure.nonRetryable(
      `${step}: order ${args.orderId} does not exist: the saga was started for an order that was never stored`,
      FAILURE_TYPES.OrderNotFound,
    );
  }
  return order;
}

export const isCurrentRun = (order: OrderRow, args: StepArgs): boolean => order.run === runOf(args);

/** A forward step of a run the order has moved on from (a retry started another): it does nothing. */
export function staleRun(order: OrderRow, args: StepArgs, step: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `${step}: order ${args.orderId} is on run ${order.run}, this is run ${runOf(args)}; changing nothing`,
    FAILURE_TYPES.StaleRun,
    { orderId: args.orderId, run: runOf(args), currentRun: order.run },
  );
}

/**
 * Forward steps of the order's current run check this too: once the run's compensation has begun,
 * a step arriving late (a zombie attempt, a reset execution) must not take stock or money the
 * compensation has already given back, or will not see.
 */
export function assertNotUndone(order: OrderRow, args: StepArgs, step: string): void {
  if (order.undo_run !== null && order.undo_run >= runOf(args)) {
    throw ApplicationFailure.nonRetryable(
      `${step}: run ${runOf(args)} of order ${args.orderId} is being undone (its compensation began); changing nothing`,
      FAILURE_TYPES.RunUndone,
      { orderId: args.orderId, run: runOf(args) },
    );
  }
}

/** What every compensation is called with. */
export interface CompensationArgs extends StepArgs {
  reason: string;
  /** The run is undone because the customer cancelled (kept with the order; a retry then refuses). */
  cancelled?: boolean;
}

export function invalidStatus(
  orderId: string,
  step: string,
  status: OrderStatus | undefined,
): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `${step}: order ${orderId} is ${status ?? 'missing'}, which this step cannot act on`,
    FAILURE_TYPES.InvalidOrderStatus,
    { orderId, status },
  );
}

/** The logger every activity uses for one order, so one grep on orderId follows it end to end. */
export function orderLogger(logger: Logger, activity: string, args: StepArgs) {
  return logger.child({
    activity,
    orderId: args.orderId,
    run: runOf(args),
    correlationId: args.correlationId,
  });
}
