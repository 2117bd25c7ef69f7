/**
 * `orders replay` (ops/replay.ts) against the real Temporal dev server: a real order saga, run to
 * COMPLETED by the production worker on this file's own task queue and database, is fetched back
 * and replayed against the current workflow code, and against a deliberately incompatible one.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { NativeConnection, Worker, type WorkflowBundle } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { connectTemporal, startOrderSaga } from '../../lib/temporal.js';
import { replayOrders } from '../../ops/replay.js';
import { createOrderWorker } from '../../workers/temporal-worker.js';
import { orderWorkflowId } from '../../workflows/contract.js';
import { waitFor } from '../helpers/amqp.js';
import { createProduct, createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { quietTemporalRuntime, sagaBundle } from '../workflow/fixtures/harness.js';
import { createOrder, sagaInput } from '../workflow/fixtures/orders.js';

const INCOMPATIBLE_WORKFLOWS = fileURLToPath(
  new URL('../fixtures/ops-incompatible-workflows.ts', import.meta.url),
);

const config = loadConfig();
const logger = createLogger('ops-replay-test', 'silent');
let db: TestDatabase;
let connection: NativeConnection;
let client: Client;
let bundle: WorkflowBundle;
let orderId: string;
let saveDir: string;

beforeAll(async () => {
  quietTemporalRuntime();
  [db, connection, client, bundle] = await Promise.all([
    createTestDatabase(),
    NativeConnection.connect({ address: config.TEMPORAL_ADDRESS }),
    connectTemporal(config),
    sagaBundle(),
  ]);
  saveDir = await mkdtemp(path.join(tmpdir(), 'ops-replay-'));

  const sku = await createProduct(db.pool, { stock: 3 });
  const order = await createOrder(db.pool, { items: [{ sku, qty: 1 }] });
  orderId = order.orderId;
  const taskQueue = `ops-replay-${randomUUID()}`;
  const worker = await createOrderWorker({
    config,
    pool: db.pool,
    logger,
    connection,
    taskQueue,
    workflowBundle: bundle,
  });
  const result = await worker.runUntil(async () => {
    await startOrderSaga(client, sagaInput(order), taskQueue);
    return client.workflow.getHandle(orderWorkflowId(orderId)).result();
  });
  expect(result).toMatchObject({ status: 'COMPLETED' });
});

afterAll(async () => {
  await connection?.close();
  await client?.connection.close();
  await db?.drop();
  if (saveDir) await rm(saveDir, { recursive: true, force: true });
});

describe('replay', () => {
  test('a completed order replays against the current workflow code, and --save writes a usable fixture', async () => {
    const result = await replayOrders(
      { client, logger, workflows: { workflowBundle: bundle } },
      { selection: { orderIds: [orderId] }, saveDir },
    );

    expect(result).toMatchObject({ command: 'replay', ok: true });
    expect(result.items).toEqual([
      {
        id: orderId,
        ok: true,
        outcome: 'replayed',
        details: expect.objectContaining({
          workflowId: orderWorkflowId(orderId),
          runId: expect.any(String),
          savedTo: path.join(saveDir, `${orderWorkflowId(orderId)}.json`),
        }),
      },
    ]);
    // The saved file is in the replay tests' format: it loads with historyFromJSON and replays.
    const saved = historyFromJSON(
      JSON.parse(await readFile(path.join(saveDir, `${orderWorkflowId(orderId)}.json`), 'utf8')),
    );
    expect(saved.events?.length).toBe(result.items[0]!.details!.events);
    await Worker.runReplayHistory({ workflowBundle: bundle }, saved, orderWorkflowId(orderId));
  });

  test('a visibility query selects the same run', async () => {
    // Visibility may lag a moment behind the run's completion.
    const result = await waitFor(
      async () => {
        const r = await replayOrders(
          { client, logger, workflows: { workflowBundle: bundle } },
          { selection: { query: `OrderId = "${orderId}"` } },
        );
        return r.items.length > 0 ? r : undefined;
      },
      { what: 'the order in visibility', intervalMs: 200 },
    );
    expect(result.ok).toBe(true);
    expect(result.items.map((i) => [i.id, i.outcome])).toEqual([[orderId, 'replayed']]);
  });

  test('code whose first step differs is reported as non-deterministic, naming the mismatch', async () => {
    const result = await replayOrders(
      { client, logger, workflows: { workflowsPath: INCOMPATIBLE_WORKFLOWS } },
      { selection: { orderIds: [orderId] } },
    );

    expect(result.ok).toBe(false);
    const [item] = result.items;
    expect(item).toMatchObject({ id: orderId, ok: false, outcome: 'non-deterministic' });
    expect(item!.reason).toMatch(/nondetermin/i);
    expect(item!.reason).toMatch(/patched\(\)/);
    // The first mismatch, as the SDK names it, and the history event it is about: the saga's first
    // command is its `lean-shape` patch marker, which this code never makes.
    expect(item!.details).toMatchObject({
      mismatch: expect.stringMatching(/^\[TMPRL1100\] Nondeterminism error: .*lean-shape/),
      eventId: expect.any(Number),
      eventType: 'MARKER_RECORDED',
    });
  });

  test('an unknown order is reported as not found, and the others are still replayed', async () => {
    const unknown = randomUUID();
    const result = await replayOrders(
      { client, logger, workflows: { workflowBundle: bundle } },
      { selection: { orderIds: [unknown, orderId] } },
    );

    expect(result.ok).toBe(false);
    expect(result.items.map((i) => [i.id, i.ok, i.outcome])).toEqual([
      [unknown, false, 'not-found'],
      [orderId, true, 'replayed'],
    ]);
    expect(result.items[0]!.reason).toMatch(/check the order id/);
  });
});
