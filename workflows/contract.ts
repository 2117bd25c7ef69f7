/**
 * The order saga's contract: everything a caller (API, bridge, tests) needs to talk to the workflow,
 * without importing the workflow body. Safe to import from workflow code (no Node APIs, no I/O).
 */
import { defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { FinalStatus, OrderStatus } from '../domain/order.js';
import type { PaymentFailureCode } from '../lib/events.js';
import type { FailureType } from './failures.js';

export const TASK_QUEUE = 'orders';
export const WORKFLOW_TYPE = 'orderSaga';
/** `orders settle`'s workflow (workflows/settle-order.ts), run under the order's own workflow id. */
export const SETTLE_WORKFLOW_TYPE = 'settleOrder';

/**
 * The business key is the workflow id: one order, one workflow, found in the Web UI by this id.
 * Lower case, as PostgreSQL prints a uuid: it finds `0B7E…` as `0b7e…`, but Temporal's ids are
 * case-sensitive, and an id typed in capitals must not miss the order's running saga.
 */
export function orderWorkflowId(orderId: string): string {
  return `order-${orderId.toLowerCase()}`;
}

/** Custom search attributes, registered at start-up (scripts/infra.sh and the worker) and kept current. */
export const SEARCH_ATTRIBUTES = {
  OrderId: defineSearchAttributeKey('OrderId', 'KEYWORD'),
  CustomerId: defineSearchAttributeKey('CustomerId', 'KEYWORD'),
  OrderStatus: defineSearchAttributeKey('OrderStatus', 'KEYWORD'),
  /**
   * Why the order did not complete (or, while the saga waits on a failing gateway, what the charge is
   * failing with): a `FailureReason`, never free text, so a Web UI query such as
   * `FailureReason = "DEADLINE_EXCEEDED"` finds every order of one kind. Absent on completed orders.
   */
  FailureReason: defineSearchAttributeKey('FailureReason', 'KEYWORD'),
} as const;

/**
 * The FailureReason search attribute's values, a bounded set: how a payment failed, the business
 * outcomes that are not a completion, and the failure type of a run that failed (workflows/failures.ts).
 */
export type FailureReason =
  PaymentFailureCode | 'OUT_OF_STOCK' | 'CANCELLED' | FailureType | 'Timeout' | 'StepFailed';

/**
 * Workflow input. No secrets and no personal data beyond ids: history is kept forever and shown in
 * the Web UI. Activities load the order (e-mail, items, prices) from PostgreSQL.
 */
export interface OrderSagaInput {
  orderId: string;
  customerId: string;
  correlationId: string;
  /**
   * Which run of the order this is (1 for a new order, 2, 3, … for an operator's retry); every effect
   * the run has is keyed by it. Absent in runs started before runs were numbered: run 1.
   */
  run?: number;
  /** How long to keep retrying a failing payment gateway before giving up and compensating. */
  paymentDeadlineMs: number;
}

/** Where the saga is; the status query returns this and the API shows it. */
/**
 * The activities the saga runs to undo its steps, in the order it registers them (they run in
 * reverse). `orders reset` resets a run to just before the first of them that failed, so the
 * compensation runs again (ops/reset.ts); the saga's compensations are typed by this list.
 */
export const COMPENSATION_ACTIVITIES = ['releaseInventory', 'refundPayment'] as const satisfies ReadonlyArray<
  keyof Activities
>;
export type CompensationActivity = (typeof COMPENSATION_ACTIVITIES)[number];

export type SagaStep = 'RESERVING_INVENTORY' | 'CHARGING_PAYMENT' | 'NOTIFYING' | 'COMPENSATING' | 'DONE';

export interface OrderSagaState {
  orderId: string;
  status: OrderStatus;
  step: SagaStep;
  cancelRequested: boolean;
  /** Compensations that failed; reported, never swallowed (the workflow then fails too). */
  compensationFailures: string[];
  reason?: string;
}

export interface OrderSagaResult {
  orderId: string;
  status: FinalStatus;
  reason?: string;
}

export interface CancelRequest {
  reason?: string;
}
export interface CancelAccepted {
  accepted: true;
  status: OrderStatus;
  /**
   * The wording the saga cancelled with: the first accepted cancel's. A cancel that joins it (the
   * same update id, or another cancel arriving later) learns here that its own wording was not the
   * one used, so its caller does not record its own code as the reason. Absent from answers given
   * before this field existed.
   */
  reason?: string;
}

/**
 * A settlement: run `run`'s compensations once more, as a workflow of their own under the order's
 * workflow id (ops/settle.ts starts it), for an order whose run still holds money or stock with no
 * run of it open to give them back (it ended without a sale, or its run stopped while giving them
 * back). No personal data, as for the saga.
 */
export interface SettleOrderInput {
  orderId: string;
  correlationId: string;
  /** The order's current run, whose payment and reservation are given back. */
  run: number;
  /** Why, from the operator: kept with the refund and the release (their events' `reason`). */
  reason: string;
  /**
   * A cancel was asked for the order, which has not ended: once everything is given back, the order
   * ends CANCELLED with this wording (domain/cancel.ts) and the customer is told.
   */
  cancel?: { wording: string };
}

export interface SettleOrderResult {
  orderId: string;
  run: number;
  /** What became of the run's money: refunded (a capture), voided (a charge in doubt), or none held. */
  money: 'refunded' | 'voided' | 'none';
  /** Whether the run's stock was given back by this settlement (or had been, by an earlier attempt). */
  stockReleased: boolean;
  /** Why a compensation did nothing, when one did nothing (e.g. the stock was sold). */
  skipped: string[];
  /** The order ended CANCELLED by this settlement (`SettleOrderInput.cancel`). */
  cancelled?: boolean;
}

export const statusQuery = defineQuery<OrderSagaState>('status');

/**
 * Cancels the order if payment has not been captured yet. The validator rejects a late cancel
 * ("too late: the order is already paid") before anything is written to history.
 */
export const cancelUpdate = defineUpdate<CancelAccepted, [CancelRequest]>('cancel');
