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
import type { OrderStatus } from '../domain/order.js';
import { cancelUpdate, orderWorkflowId } from '../workflows/contract.js';
import { FAILURE_TYPES } from '../workflows/failures.js';

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
    // Only the saga's refusal (CancelRejected) is the client's answer, and its message is written for
    // people. Anything else (a compensation that failed) is a server-side failure: rethrown, a 500.
    const cause = err.cause;
    if (cause instanceof ApplicationFailure && cause.type === FAILURE_TYPES.CancelRejected) {
      return { kind: 'rejected', reason: cause.message || GENERIC_REJECTION };
    }
    throw err;
  }
  if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError) return { kind: 'timeout' };
  if (err instanceof ServiceError) return { kind: 'unavailable' };
  throw err;
}
