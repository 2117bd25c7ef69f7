/**
 * A bare copy of the order saga's shape (workflows/order-saga.ts, happy path), with no-op activities:
 * the same activity types in the same order with the same options, the payment-deadline timer
 * started before the charge and cancelled after it, and the same OrderStatus search-attribute
 * upserts, in the same order in history. What it leaves out is what the saga does besides Temporal:
 * the database, the broker, the gateway, logging, compensations, and the query/update handlers
 * (which write nothing to history).
 *
 * The code follows the saga's structure step by step (the same awaits between commands), because the
 * order of commands in one workflow task depends on it: a timer cancel, for one, reaches history
 * only after a few microtasks.
 *
 * Keep it a copy: when the saga's shape changes, change this too. `npm run bench` compares the event
 * history of one pipeline saga with one run of this workflow and prints a warning when they differ.
 */
import {
  CancellationScope,
  allHandlersFinished,
  condition,
  proxyActivities,
  sleep,
  upsertSearchAttributes,
  type ActivityOptions,
} from '@temporalio/workflow';
import { defineSearchAttributeKey } from '@temporalio/common';
import type * as activities from './activities.js';

/** Copied from ACTIVITY_PROFILES in workflows/order-saga.ts. */
const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' } as const;
const database: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry,
  cancellationType: 'WAIT_CANCELLATION_COMPLETED',
};
const payment: ActivityOptions = database;

const db = proxyActivities<typeof activities>(database);
const gateway = proxyActivities<typeof activities>(payment);

const OrderStatus = defineSearchAttributeKey('OrderStatus', 'KEYWORD');

export interface SagaShapeInput {
  orderId: string;
  customerId: string;
  correlationId: string;
  paymentDeadlineMs: number;
  run?: number;
}

interface StepIds {
  orderId: string;
  run: number;
  correlationId: string;
}

export async function sagaShapeBare(input: SagaShapeInput): Promise<{ orderId: string; status: string }> {
  const work = new CancellationScope();
  try {
    return await work.run(() => forward(input, work));
  } finally {
    await CancellationScope.nonCancellable(() => condition(allHandlersFinished));
  }
}

async function forward(input: SagaShapeInput, work: CancellationScope) {
  const ids = { orderId: input.orderId, run: input.run ?? 1, correlationId: input.correlationId };
  await db.reserveInventory(ids);
  upsertSearchAttributes([{ key: OrderStatus, value: 'RESERVED' }]);
  await throwIfCancelled(work);

  await chargeBeforeDeadline(input, ids);
  upsertSearchAttributes([{ key: OrderStatus, value: 'PAID' }]);
  await throwIfCancelled(work);

  return CancellationScope.nonCancellable(async () => {
    await db.notifyCustomer({ ...ids, kind: 'order-completed' });
    await db.completeOrder(ids);
    upsertSearchAttributes([{ key: OrderStatus, value: 'COMPLETED' }]);
    return { orderId: input.orderId, status: 'COMPLETED' };
  });
}

async function chargeBeforeDeadline(input: SagaShapeInput, ids: StepIds): Promise<'captured'> {
  const charge = new CancellationScope();
  const timer = new CancellationScope();
  void timer
    .run(() => sleep(input.paymentDeadlineMs))
    .then(
      () => charge.cancel(),
      () => undefined,
    );
  try {
    await charge.run(() => gateway.chargePayment(ids));
    return 'captured';
  } finally {
    timer.cancel();
  }
}

async function throwIfCancelled(work: CancellationScope): Promise<void> {
  if (work.consideredCancelled) await work.cancelRequested;
}
