/**
 * Failure types shared by activities (which throw them) and the workflows (which branch on them and
 * name them in retry policies), and how a workflow words a failure. Safe in the workflow bundle.
 */
import { ActivityFailure } from '@temporalio/common';

export const FAILURE_TYPES = {
  /** The gateway declined the charge: final, never retried. */
  PaymentDeclined: 'PaymentDeclined',
  /** The gateway could not be reached: retried with backoff until the payment deadline. */
  GatewayUnavailable: 'GatewayUnavailable',
  OrderNotFound: 'OrderNotFound',
  /** The order is in a status the step cannot act on; retrying will not change that. */
  InvalidOrderStatus: 'InvalidOrderStatus',
  /** A compensation failed; the workflow fails naming it so an operator can fix and re-drive. */
  CompensationFailed: 'CompensationFailed',
  /**
   * The step was called by a run that is not the order's current one (an operator retried the order
   * since): it changed nothing.
   */
  StaleRun: 'StaleRun',
  /**
   * The step belongs to a run whose compensation has begun (a zombie attempt arriving after the run
   * started undoing itself, or a reset execution of such a run): it changed nothing.
   */
  RunUndone: 'RunUndone',
  /** The step was called by a workflow other than the order's own `order-<id>`: it changed nothing. */
  ForeignWorkflow: 'ForeignWorkflow',
  /**
   * PostgreSQL refused the data itself (SQLSTATE class 22: a NUL byte, a value out of range): the
   * same attempt would fail the same way forever, so it is not retried.
   */
  DataError: 'DataError',
  /** A cancel update arrived too late (payment captured or the order already ended). */
  CancelRejected: 'CancelRejected',
  /**
   * The charge refused because the customer's cancel is recorded on the order (`cancel_requested_at`)
   * though the run never took it (the update was lost to an outage, or the run was reset): the saga
   * cancels the order instead (PATCHES.recordedCancelStopsCharge). Nothing was charged.
   */
  CancelRequested: 'CancelRequested',
} as const;

export type FailureType = (typeof FAILURE_TYPES)[keyof typeof FAILURE_TYPES];

/** The useful message of a failure: an activity failure's own message only says "activity failed". */
export function failureMessage(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}
