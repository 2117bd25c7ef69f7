/**
 * The API's one conversation with the order saga: the cancel Update. Behind a small interface so
 * routes never see Temporal errors, and unit tests can stand in for Temporal.
 */
import {
  ServiceError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  type Client,
} from '@temporalio/client';
import { ApplicationFailure, WorkflowNotFoundError } from '@temporalio/common';
import { cancelUpdate, orderWorkflowId, type OrderStatus } from '../workflows/contract.js';

export type WorkflowCancelOutcome =
  /** The saga accepted the cancel and compensates; `status` is what it reported. */
  | { kind: 'accepted'; status: OrderStatus }
  /** The saga's validator refused, e.g. "too late: order is already paid". */
  | { kind: 'rejected'; reason: string }
  /** No running workflow `order-<id>`: not started yet, or already closed. */
  | { kind: 'not_running' }
  /** No answer within the deadline (e.g. no worker polling); the Update may still be applied. */
  | { kind: 'timeout' }
  /** Temporal itself could not be reached. */
  | { kind: 'unavailable' };

export interface OrderWorkflows {
  cancel(orderId: string, reason: string): Promise<WorkflowCancelOutcome>;
}

const GENERIC_REJECTION = "The order's workflow refused the cancel.";

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
        return { kind: 'accepted', status: accepted.status };
      } catch (err) {
        return classifyCancelError(err);
      }
    },
  };
}

/** Maps the client's errors to outcomes; anything unexpected is rethrown (a 500, logged). */
export function classifyCancelError(err: unknown): WorkflowCancelOutcome {
  if (err instanceof WorkflowNotFoundError) return { kind: 'not_running' };
  if (err instanceof WorkflowUpdateFailedError) {
    // Only an ApplicationFailure carries a message written for people; anything else stays inside.
    const cause = err.cause;
    const reason = cause instanceof ApplicationFailure && cause.message ? cause.message : GENERIC_REJECTION;
    return { kind: 'rejected', reason };
  }
  if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError) return { kind: 'timeout' };
  if (err instanceof ServiceError) return { kind: 'unavailable' };
  throw err;
}
