/**
 * Races the time-skipping test server cannot show, on the real dev server: a charge attempt that is
 * already running when the saga is cancelled (or its payment deadline passes), and that then ends in
 * its own transient failure. The server reports it as failed with retryState CANCEL_REQUESTED, not
 * as cancelled; the saga must still end the way the cancel or the deadline decided
 * (PATCHES.failedAttemptAfterCancel in workflows/order-saga.ts).
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  WorkflowFailedError,
  WorkflowUpdateFailedError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PaymentDeclinedError, type PaymentGateway } from '../../activities/payment-gateway.js';
import { retryOrder } from '../../db/order-retries.js';
import { recordCancelRequest } from '../../db/orders.js';
import { createLogger } from '../../lib/logger.js';
import { connectTemporal, startOrderSaga } from '../../lib/temporal.js';
import { createOrderWorker, type OrderWorkerOptions } from '../../workers/temporal-worker.js';
import { cancelUpdate, orderWorkflowId, statusQuery } from '../../workflows/contract.js';
import { shortId, testConfig, waitFor } from '../helpers/amqp.js';
import { createProduct, createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { downGateway, gatedFailingGateway } from '../workflow/fixtures/gateways.js';
import { createOrder, outboxTypes, orderStatus, sagaInput, stockOf } from '../workflow/fixtures/orders.js';

let db: TestDatabase;
let connection: NativeConnection;
let client: Client;

beforeAll(async () => {
  db = await createTestDatabase();
  connection = await NativeConnection.connect({ address: testConfig('x').TEMPORAL_ADDRESS });
  client = await connectTemporal(testConfig('x'));
});
afterAll(async () => {
  await connection?.close();
  await client?.connection.close();
  await db?.drop();
});

/**
 * These races' histories are what the replay test needs for the patches only they reach (the
 * time-skipping server cannot produce them): `RECORD_HISTORIES=<name>[,…]` saves them there
 * (test/workflow/replay.test.ts).
 */
async function saveHistoryIfRecording(name: string, handle: WorkflowHandle): Promise<void> {
  if (!(process.env.RECORD_HISTORIES ?? '').split(',').includes(name)) return;
  const file = fileURLToPath(new URL(`../workflow/histories/${name}.json`, import.meta.url));
  writeFileSync(file, `${historyToJSON(await handle.fetchHistory())}\n`);
}

/**
 * A worker on a task queue of its own, with `gateway` (and single activities replaced, for a
 * compensation that fails), and an order of 2 of a new product (stock 5).
 */
async function sagaWith<G extends PaymentGateway>(
  gateway: G,
  activityOverrides?: OrderWorkerOptions['activityOverrides'],
) {
  const config = testConfig(shortId());
  const worker: Worker = await createOrderWorker({
    config,
    pool: db.pool,
    logger: createLogger('saga-races-test', 'silent'),
    connection,
    gateway,
    ...(activityOverrides ? { activityOverrides } : {}),
  });
  const sku = await createProduct(db.pool, { stock: 5 });
  const order = await createOrder(db.pool, { items: [{ sku, qty: 2 }] });
  return { config, gateway, worker, sku, order };
}

/**
 * A cancel asked while the gated charge attempt is in flight, which then fails as the gateway
 * decides (a decline): the cancel is answered "too late", the order having ended PAYMENT_FAILED.
 */
async function expectCancelDuringChargeTooLate(
  handle: WorkflowHandle,
  gateway: ReturnType<typeof gatedFailingGateway>,
): Promise<void> {
  await gateway.entered;
  const answer = handle
    .executeUpdate(cancelUpdate, { args: [{ reason: 'changed my mind' }] })
    .catch((err: unknown) => err);
  await waitFor(async () => (await handle.query(statusQuery)).cancelRequested, { what: 'the cancel' });
  gateway.open();
  const refused = await answer;
  expect(refused).toBeInstanceOf(WorkflowUpdateFailedError);
  expect((refused as WorkflowUpdateFailedError).cause).toMatchObject({
    type: 'CancelRejected',
    message: 'too late: the order ended PAYMENT_FAILED before the cancel took effect',
  });
}

/** The order ended CANCELLED, its stock (5, 2 reserved) back, and its events say so in order. */
async function expectCancelledWithStockBack(orderId: string, sku: string): Promise<void> {
  expect(await orderStatus(db.pool, orderId)).toBe('CANCELLED');
  expect(await stockOf(db.pool, sku)).toBe(5);
  expect(await outboxTypes(db.pool, orderId)).toEqual([
    'inventory.reserved',
    'inventory.released',
    'order.cancelled',
  ]);
}

describe('a charge attempt in flight that fails after the saga decided', () => {
  it('cancelled meanwhile: the cancel wins, the order ends CANCELLED with its stock back', async () => {
    const { config, gateway, worker, sku, order } = await sagaWith(gatedFailingGateway());
    await worker.runUntil(async () => {
      await startOrderSaga(client, sagaInput(order), config.TEMPORAL_TASK_QUEUE);
      const handle = client.workflow.getHandle(orderWorkflowId(order.orderId));
      await gateway.entered;
      const answer = handle.executeUpdate(cancelUpdate, { args: [{ reason: 'changed my mind' }] });
      await waitFor(async () => (await handle.query(statusQuery)).cancelRequested, { what: 'the cancel' });
      gateway.open();

      expect(await answer).toEqual({ accepted: true, status: 'CANCELLED', reason: 'changed my mind' });
      expect(await handle.result()).toMatchObject({ status: 'CANCELLED', reason: 'changed my mind' });
    });
    expect(gateway.attempts).toBe(1);
    await expectCancelledWithStockBack(order.orderId, sku);
  });

  it('deadline passed meanwhile: the payment fails as DEADLINE_EXCEEDED and the stock comes back', async () => {
    const { config, gateway, worker, sku, order } = await sagaWith(gatedFailingGateway());
    await worker.runUntil(async () => {
      await startOrderSaga(client, sagaInput(order, 1000), config.TEMPORAL_TASK_QUEUE);
      const handle = client.workflow.getHandle(orderWorkflowId(order.orderId));
      await gateway.entered;
      await new Promise((resolve) => setTimeout(resolve, 1500)); // the 1 s deadline passes
      gateway.open();
      expect(await handle.result()).toMatchObject({ status: 'PAYMENT_FAILED' });
      await saveHistoryIfRecording('deadline-during-charge-attempt', handle);
    });
    expect(await orderStatus(db.pool, order.orderId)).toBe('PAYMENT_FAILED');
    expect(await stockOf(db.pool, sku)).toBe(5);
    expect(await outboxTypes(db.pool, order.orderId)).toEqual([
      'inventory.reserved',
      'payment.failed',
      'inventory.released',
    ]);
    const { rows } = await db.pool.query(
      `select payload -> 'data' ->> 'code' as code from event_outbox where order_id = $1 and type = 'payment.failed'`,
      [order.orderId],
    );
    expect(rows[0].code).toBe('DEADLINE_EXCEEDED');
  });

  it('a retry attempt that waits out the deadline and then finds the customer’s cancel recorded: the cancel wins, the order ends CANCELLED', async () => {
    const { config, gateway, worker, sku, order } = await sagaWith(downGateway());
    await worker.runUntil(async () => {
      await startOrderSaga(client, sagaInput(order, 3000), config.TEMPORAL_TASK_QUEUE);
      const handle = client.workflow.getHandle(orderWorkflowId(order.orderId));
      await waitFor(() => gateway.attempts >= 1, { what: 'the first charge attempt to fail' });
      // The customer's cancel, recorded on the order (its update to the saga lost to an outage), in a
      // transaction that holds the order's row lock: the retry attempt waits on it past the deadline.
      const holder = await db.pool.connect();
      try {
        await holder.query('begin');
        await recordCancelRequest(holder, order.orderId);
        await waitFor(
          async () =>
            (
              await db.pool.query(
                `select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
              )
            ).rowCount,
          { what: 'the retry attempt to wait on the order row' },
        );
        // Two timers fire: the 1 s backoff before the retry, then the deadline.
        await waitFor(
          async () =>
            (await handle.fetchHistory()).events!.filter((e) => e.timerFiredEventAttributes).length >= 2,
          { what: 'the payment deadline to pass', timeoutMs: 10_000 },
        );
        await holder.query('commit');
      } finally {
        holder.release();
      }
      expect(await handle.result()).toMatchObject({ status: 'CANCELLED' });
      await saveHistoryIfRecording('recorded-cancel-at-deadline', handle);
    });
    expect(gateway.attempts).toBe(1); // the retry refused before the gateway
    await expectCancelledWithStockBack(order.orderId, sku);
  });

  it('cancelled meanwhile, but the attempt was declined: the cancel is refused as too late, the order PAYMENT_FAILED', async () => {
    const { config, gateway, worker, sku, order } = await sagaWith(
      gatedFailingGateway(() => new PaymentDeclinedError('simulated: card declined', 'CARD_DECLINED')),
    );
    await worker.runUntil(async () => {
      await startOrderSaga(client, sagaInput(order), config.TEMPORAL_TASK_QUEUE);
      const handle = client.workflow.getHandle(orderWorkflowId(order.orderId));
      await expectCancelDuringChargeTooLate(handle, gateway);
      expect(await handle.result()).toMatchObject({ status: 'PAYMENT_FAILED' });
      await saveHistoryIfRecording('cancel-then-declined', handle);
    });
    expect(await orderStatus(db.pool, order.orderId)).toBe('PAYMENT_FAILED');
    expect(await stockOf(db.pool, sku)).toBe(5);
    // The customer asked to cancel: no retry may charge this order later (review finding: a bulk
    // retry after an outage would have run it again under a new charge key).
    const { rows } = await db.pool.query(
      'select cancel_requested_at is not null as "cancelRequested" from orders where id = $1',
      [order.orderId],
    );
    expect(rows[0]).toEqual({ cancelRequested: true });
    expect(
      await retryOrder(db.pool, order.orderId, { reason: 'after the outage', latest: undefined }),
    ).toMatchObject({
      kind: 'refused',
      reason: expect.stringContaining('a cancel was asked for this order'),
    });
  });

  it('cancelled meanwhile, declined, and giving the stock back then fails: still "too late", not "cancel not completed"', async () => {
    const { config, gateway, worker, sku, order } = await sagaWith(
      gatedFailingGateway(() => new PaymentDeclinedError('simulated: card declined', 'CARD_DECLINED')),
      {
        releaseInventory: async () => {
          throw ApplicationFailure.nonRetryable('simulated: inventory database unavailable');
        },
      },
    );
    await worker.runUntil(async () => {
      await startOrderSaga(client, sagaInput(order), config.TEMPORAL_TASK_QUEUE);
      const handle = client.workflow.getHandle(orderWorkflowId(order.orderId));
      // The order ended PAYMENT_FAILED: the cancel was never going to happen, whatever failed after.
      await expectCancelDuringChargeTooLate(handle, gateway);
      // The run still fails, naming the compensation, for an operator.
      const failed = await handle.result().catch((err: unknown) => err);
      expect(failed).toBeInstanceOf(WorkflowFailedError);
      expect((failed as WorkflowFailedError).cause?.message).toContain('releaseInventory');
      await saveHistoryIfRecording('cancel-then-declined-compensation-failed', handle);
    });
    expect(await orderStatus(db.pool, order.orderId)).toBe('PAYMENT_FAILED');
    expect(await stockOf(db.pool, sku)).toBe(3); // not given back: an operator's, as the run's failure says
  });
});
