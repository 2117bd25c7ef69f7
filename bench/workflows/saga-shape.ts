/**
 * A bare copy of the order saga's shape (workflows/order-saga.ts, happy path, since its
 * `lean-shape` patch), with no-op activities: the same patch marker, the
 * same activity types in the same order with the same options (reserveInventory, the e-mail and
 * completeOrder local, the charge's first attempt regular), and the one OrderStatus upsert at the
 * end. The payment-deadline timer is not started on the happy path (the saga starts it only when a
 * first charge attempt fails), so it is not here either. What it leaves out is what the saga does
 * besides Temporal: the database, the broker, the gateway, logging, compensations, and the
 * query/update handlers (which write nothing to history).
 *
 * The code follows the saga's structure step by step (the same awaits between commands), because the
 * order of commands in one workflow task depends on it.
 *
 * Keep it a copy: when the saga's shape changes, change this too. `npm run bench` compares the event
 * history of one pipeline saga with one run of this workflow and prints a warning when they differ.
 */
import {
  CancellationScope,
  allHandlersFinished,
  condition,
  patched,
  proxyActivities,
  proxyLocalActivities,
  upsertSearchAttributes,
  type ActivityOptions,
  type LocalActivityOptions,
} from '@temporalio/workflow';
import { defineSearchAttributeKey } from '@temporalio/common';
import type * as activities from './activities.js';

/** Copied from ACTIVITY_PROFILES and LOCAL_ACTIVITY_PROFILES in workflows/order-saga.ts. */
const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' } as const;
const paymentFirstAttempt: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: { maximumAttempts: 1 },
  cancellationType: 'WAIT_CANCELLATION_COMPLETED',
};
const localDatabase: LocalActivityOptions = {
  startToCloseTimeout: '10 seconds',
  retry,
  localRetryThreshold: '10 seconds',
  cancellationType: 'WAIT_CANCELLATION_COMPLETED',
};

/** The saga's PATCHES.leanShape: the same marker (and upsert) in history. */
const LEAN_SHAPE = 'lean-shape';

const local = (summary: string) => proxyLocalActivities<typeof activities>({ ...localDatabase, summary });
const regular = (profile: ActivityOptions, summary: string) =>
  proxyActivities<typeof activities>({ ...profile, summary });

const OrderStatus = defineSearchAttributeKey('OrderStatus', 'KEYWORD');

export interface SagaShapeInput {
  orderId: string;
  customerId: string;
  correlationId: string;
  paymentDeadlineMs: number;
  run?: number;
}

export async function sagaShapeBare(input: SagaShapeInput): Promise<{ orderId: string; status: string }> {
  patched(LEAN_SHAPE);
  const work = new CancellationScope();
  try {
    return await work.run(() => forward(input, work));
  } finally {
    await CancellationScope.nonCancellable(() => condition(allHandlersFinished));
  }
}

async function forward(input: SagaShapeInput, work: CancellationScope) {
  const ids = { orderId: input.orderId, run: input.run ?? 1, correlationId: input.correlationId };
  await local('reserve stock').reserveInventory(ids);
  await throwIfCancelled(work);

  await regular(paymentFirstAttempt, 'charge the payment').chargePayment(ids);
  await throwIfCancelled(work);

  return CancellationScope.nonCancellable(async () => {
    await local('e-mail the customer: order completed').notifyCustomer({
      ...ids,
      kind: 'order-completed',
    });
    await local('mark the order completed').completeOrder(ids);
    upsertSearchAttributes([{ key: OrderStatus, value: 'COMPLETED' }]);
    return { orderId: input.orderId, status: 'COMPLETED' };
  });
}

async function throwIfCancelled(work: CancellationScope): Promise<void> {
  if (work.consideredCancelled) await work.cancelRequested;
}
