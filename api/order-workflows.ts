/**
 * The API's conversations with the order saga: the cancel Update, and asking which run is the latest
 * (for a retry). Behind a small interface so routes never see Temporal errors, and unit tests can
 * stand in for Temporal.
 */
import {
  ServiceError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  type Client,
} from '@temporalio/client';
import { ApplicationFailure, WorkflowNotFoundError } from '@temporalio/common';
import type { OrderStatus } from '../domain/order.js';
import { latestOrderRun } from '../lib/temporal.js';
import { cancelUpdate, orderWorkflowId } from '../workflows/contract.js';
import { FAILURE_TYPES } from '../workflows/failures.js';

export type WorkflowCancelOutcome =
  /**
   * The saga accepted the cancel and compensates; `status` is what it reported, `reason` the wording
   * it cancelled with (another caller's, when this cancel joined one made first; absent from sagas
   * that answered before they reported it).
   */
  | { kind: 'accepted'; status: OrderStatus; reason?: string | undefined }
  /** The saga's validator refused, e.g. "too late: order is already paid". */
  | { kind: 'rejected'; reason: string }
  /**
   * The saga accepted the cancel, then a compensation failed for good (CompensationFailed): the
   * order needs an operator. Its message stays in the logs and the Web UI, not in the answer;
   * `reason` is the wording the saga was cancelling with (absent from sagas that did not say).
   */
  | { kind: 'incomplete'; reason?: string | undefined }
  /** No running workflow `order-<id>`: not started yet, or already closed. */
  | { kind: 'not_running' }
  /** No answer within the deadline (e.g. no worker polling); the Update may still be applied. */
  | { kind: 'timeout' }
  /** Temporal itself could not be reached. */
  | { kind: 'unavailable' };

/** The order's latest run as Temporal sees it, or why Temporal could not say. */
export type LatestRunOutcome =
  | { kind: 'found'; run: number; open: boolean; settlement: boolean }
  | { kind: 'none' }
  | { kind: 'unavailable' };

export interface OrderWorkflows {
  cancel(orderId: string, reason: string): Promise<WorkflowCancelOutcome>;
  /** For a retry: is a run of the order open, and which run is the latest. */
  latestRun(orderId: string): Promise<LatestRunOutcome>;
}

const GENERIC_REJECTION = "The order's workflow refused the cancel.";

/** The server's failure for an accepted update whose run closed before the update completed. */
const UPDATE_OUTLIVED_BY_RUN = 'AcceptedUpdateCompletedWorkflow';

/**
 * @example
 * const workflows = createTemporalOrderWorkflows(client, { timeoutMs: 5000 });
 * const outcome = await workflows.cancel(orderId, 'customer request');
 */
export function createTemporalOrderWorkflows(
  client: Client,
  { timeoutMs = 5_000 }: { timeoutMs?: number } = {},
): OrderWorkflows {
  return {
    async cancel(orderId, reason) {
      const handle = client.workflow.getHandle(orderWorkflowId(orderId));
      try {
        const accepted = await client.withDeadline(Date.now() + timeoutMs, () =>
          // One Update id per order: a retried cancel (lost response, timeout) attaches to the first
          // one instead of being applied twice.
          handle.executeUpdate(cancelUpdate, { args: [{ reason }], updateId: `cancel-${orderId}` }),
        );
        return { kind: 'accepted', status: accepted.status, reason: accepted.reason };
      } catch (err) {
        return classifyCancelError(err);
      }
    },
    async latestRun(orderId) {
      try {
        const latest = await client.withDeadline(Date.now() + timeoutMs, () =>
          latestOrderRun(client, orderId),
        );
        return latest
          ? { kind: 'found', run: latest.run, open: latest.open, settlement: latest.settlement }
          : { kind: 'none' };
      } catch (err) {
        if (err instanceof ServiceError) return { kind: 'unavailable' };
        throw err;
      }
    },
  };
}

/** Maps the client's errors to outcomes; anything unexpected is rethrown (a 500, logged). */
export function classifyCancelError(err: unknown): WorkflowCancelOutcome {
  if (err instanceof WorkflowNotFoundError) return { kind: 'not_running' };
  if (err instanceof WorkflowUpdateFailedError) {
    // Only the saga's refusal (CancelRejected) is the client's answer, and its message is written for
    // people. A compensation that failed is named without its message (it may quote a server's
    // error); anything else is a server-side failure: rethrown, a 500 that shows nothing.
    const cause = err.cause;
    if (cause instanceof ApplicationFailure && cause.type === FAILURE_TYPES.CancelRejected) {
      return { kind: 'rejected', reason: cause.message || GENERIC_REJECTION };
    }
    // Asked again after the run that accepted this cancel (one update id per order) ended without
    // finishing it (terminated, say): the server answers with that run's end. No run is cancelling.
    if (cause instanceof ApplicationFailure && cause.type === UPDATE_OUTLIVED_BY_RUN)
      return { kind: 'not_running' };
    if (cause instanceof ApplicationFailure && cause.type === FAILURE_TYPES.CompensationFailed) {
      const reason = (cause.details?.[0] as { reason?: unknown } | undefined)?.reason;
      return { kind: 'incomplete', reason: typeof reason === 'string' ? reason : undefined };
    }
    throw err;
  }
  if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError) return { kind: 'timeout' };
  if (err instanceof ServiceError) return { kind: 'unavailable' };
  throw err;
}
