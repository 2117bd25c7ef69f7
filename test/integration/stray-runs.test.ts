/**
 * Runs that should not be doing anything, on the real dev server with the real activities: a
 * Temporal reset of a COMPLETED order's run to its first workflow task, a second orderSaga started by
 * hand for it (its own input, another workflow id), and one started under the order's own id after
 * the first has closed. Each must end without changing stock, payment, status, events or e-mails.
 * (Before runs had identities, the reset run's reservation failed and its "release stock"
 * compensation gave the sold stock back: phantom stock.)
 */
import { randomUUID } from 'node:crypto';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../lib/logger.js';
import { connectTemporal, startOrderSaga } from '../../lib/temporal.js';
import { createOrderWorker } from '../../workers/temporal-worker.js';
import { WORKFLOW_TYPE, orderWorkflowId } from '../../workflows/contract.js';
import { shortId, testConfig, waitFor } from '../helpers/amqp.js';
import { createProduct, createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { ledgerGateway, type LedgerGateway } from '../workflow/fixtures/gateways.js';
import {
  createOrder,
  notificationKinds,
  orderStatus,
  outboxTypes,
  paymentStatus,
  sagaInput,
  stockOf,
  type TestOrder,
} from '../workflow/fixtures/orders.js';

let db: TestDatabase;
let connection: NativeConnection;
let client: Client;
let worker: Worker;
let gateway: LedgerGateway;
let running: Promise<void>;
const config = testConfig(shortId());

beforeAll(async () => {
  db = await createTestDatabase();
  connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  client = await connectTemporal(config);
  gateway = ledgerGateway();
  worker = await createOrderWorker({
    config,
    pool: db.pool,
    logger: createLogger('stray-runs-test', 'silent'),
    connection,
    gateway,
  });
  running = worker.run();
});
afterAll(async () => {
  worker?.shutdown();
  await running;
  await connection?.close();
  await client?.connection.close();
  await db?.drop();
});

async function completedOrder(): Promise<{ order: TestOrder; sku: string }> {
  const sku = await createProduct(db.pool, { stock: 5 });
  const order = await createOrder(db.pool, { items: [{ sku, qty: 2 }] });
  await startOrderSaga(client, sagaInput(order), config.TEMPORAL_TASK_QUEUE);
  const result = await client.workflow.getHandle(orderWorkflowId(order.orderId)).result();
  expect(result).toMatchObject({ status: 'COMPLETED' });
  return { order, sku };
}

async function snapshot(order: TestOrder, sku: string) {
  return {
    stock: await stockOf(db.pool, sku),
    status: await orderStatus(db.pool, order.orderId),
    payment: await paymentStatus(db.pool, order.orderId),
    events: await outboxTypes(db.pool, order.orderId),
    notifications: await notificationKinds(db.pool, order.orderId),
    held: gateway.held.get(order.orderId),
  };
}

describe('a COMPLETED order is left as it is', () => {
  it('by a Temporal reset of its run to the first workflow task', async () => {
    const { order, sku } = await completedOrder();
    const before = await snapshot(order, sku);
    expect(before).toMatchObject({ stock: 3, status: 'COMPLETED', payment: 'CAPTURED' });

    const handle = client.workflow.getHandle(orderWorkflowId(order.orderId));
    const { runId } = await handle.describe();
    const history = await handle.fetchHistory();
    const firstTask = history.events!.find((e) => e.workflowTaskCompletedEventAttributes)!;
    const reset = await client.workflowService.resetWorkflowExecution({
      namespace: config.TEMPORAL_NAMESPACE,
      workflowExecution: { workflowId: orderWorkflowId(order.orderId), runId },
      workflowTaskFinishEventId: firstTask.eventId,
      reason: 'test: reset a completed run',
      requestId: randomUUID(),
    });
    const resetHandle = client.workflow.getHandle(orderWorkflowId(order.orderId), reset.runId!);
    // The reset run re-executes every step; each finds its own run's record and changes nothing.
    const outcome = await resetHandle.result().catch((err: unknown) => err);
    expect(await snapshot(order, sku)).toEqual(before);
    expect(outcome).toMatchObject({ status: 'COMPLETED' });
    expect(gateway.captures).toBeGreaterThan(0);
    expect(gateway.calls.refund.filter((k) => k.includes(order.orderId))).toEqual([]);
  });

  it('by a second orderSaga started by hand under another workflow id', async () => {
    const { order, sku } = await completedOrder();
    const before = await snapshot(order, sku);

    const stray = await client.workflow.start(WORKFLOW_TYPE, {
      workflowId: `stray-${order.orderId}`,
      taskQueue: config.TEMPORAL_TASK_QUEUE,
      args: [sagaInput(order)],
    });
    const failure = await stray.result().catch((err: unknown) => err);
    expect(await snapshot(order, sku)).toEqual(before);
    // Every step refused it, saying why; its compensations refused too, and the run says so.
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect(String((failure as WorkflowFailedError).cause?.message)).toMatch(/not by the order's own order-/);
  });

  it('by a second run under the order’s own id once the first has closed', async () => {
    const { order, sku } = await completedOrder();
    const before = await snapshot(order, sku);

    const again = await client.workflow.start(WORKFLOW_TYPE, {
      workflowId: orderWorkflowId(order.orderId),
      taskQueue: config.TEMPORAL_TASK_QUEUE,
      args: [sagaInput(order)],
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    });
    const outcome = await again.result().catch((err: unknown) => err);
    expect(await snapshot(order, sku)).toEqual(before);
    expect(outcome).toMatchObject({ status: 'COMPLETED' });
  });
});

describe('a cancel whose text PostgreSQL could not store', () => {
  it('is refused by the saga’s validator, and the order still reaches its final state', async () => {
    const sku = await createProduct(db.pool, { stock: 5 });
    const order = await createOrder(db.pool, { items: [{ sku, qty: 1 }] });
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    gateway.hooks.beforeDecision = () => gate; // hold the charge: the order sits RESERVED
    await startOrderSaga(client, sagaInput(order), config.TEMPORAL_TASK_QUEUE);
    const handle = client.workflow.getHandle(orderWorkflowId(order.orderId));
    await waitFor(async () => (await orderStatus(db.pool, order.orderId)) === 'RESERVED', {
      what: 'the reservation',
    });
    for (const reason of ['nul\u0000byte', 'lone \ud800 surrogate', 'bell\u0007']) {
      await expect(handle.executeUpdate('cancel', { args: [{ reason }] })).rejects.toMatchObject({
        cause: { message: expect.stringMatching(/^reason must/) },
      });
    }
    gateway.hooks = {};
    open();
    expect(await handle.result()).toMatchObject({ status: 'COMPLETED' });
    expect(await stockOf(db.pool, sku)).toBe(4);
  });
});
