/**
 * The production worker factory against the REAL Temporal dev server (loadConfig defaults,
 * 127.0.0.1:7233): the real orderSaga with its real activities on a test database runs to
 * COMPLETED. A unique task queue keeps this run away from any worker serving `orders`.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { connectTemporal, startOrderSaga } from '../../lib/temporal.js';
import { ensureSearchAttributes } from '../../lib/temporal-namespace.js';
import { createOrderWorker } from '../../workers/temporal-worker.js';
import { SEARCH_ATTRIBUTES, orderWorkflowId, statusQuery } from '../../workflows/contract.js';
import type { orderSaga } from '../../workflows/order-saga.js';
import { createProduct, createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrder, outboxTypes, sagaInput, stockOf } from '../workflow/fixtures/orders.js';

const config = loadConfig();
const logger = createLogger('worker-smoke-test', 'silent');
let db: TestDatabase;
let connection: NativeConnection;
let client: Client;

beforeAll(async () => {
  db = await createTestDatabase();
  connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  client = await connectTemporal(config);
});
afterAll(async () => {
  await connection?.close();
  await client?.connection.close();
  await db?.drop();
});

test('search attributes are registered idempotently (a second worker start registers nothing)', async () => {
  await ensureSearchAttributes(connection, config.TEMPORAL_NAMESPACE, logger);
  expect(await ensureSearchAttributes(connection, config.TEMPORAL_NAMESPACE, logger)).toEqual([]);
});

test('a worker built by createOrderWorker runs the order saga to completion on the dev server', async () => {
  const sku = await createProduct(db.pool, { stock: 3 });
  const order = await createOrder(db.pool, { items: [{ sku, qty: 1 }] });
  const taskQueue = `worker-smoke-${randomUUID()}`;
  const worker: Worker = await createOrderWorker({ config, pool: db.pool, logger, connection, taskQueue });

  const result = await worker.runUntil(async () => {
    expect(await startOrderSaga(client, sagaInput(order), taskQueue)).toBe('started');
    // A duplicate start (the bridge seeing order.placed twice) is refused: one saga per order.
    expect(await startOrderSaga(client, sagaInput(order), taskQueue)).toBe('already-started');
    const handle = client.workflow.getHandle<typeof orderSaga>(orderWorkflowId(order.orderId));
    const outcome = await handle.result();
    expect((await handle.query(statusQuery)).step).toBe('DONE');
    const { typedSearchAttributes } = await handle.describe();
    expect(typedSearchAttributes.get(SEARCH_ATTRIBUTES.OrderStatus)).toBe('COMPLETED');
    expect(typedSearchAttributes.get(SEARCH_ATTRIBUTES.OrderId)).toBe(order.orderId);
    return outcome;
  });

  expect(result).toEqual({ orderId: order.orderId, status: 'COMPLETED' });
  expect(await stockOf(db.pool, sku)).toBe(2);
  expect(await outboxTypes(db.pool, order.orderId)).toEqual([
    'inventory.reserved',
    'payment.completed',
    'order.completed',
  ]);
});
