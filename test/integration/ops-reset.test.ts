/**
 * `orders reset` (ops/reset.ts) against the real Temporal dev server: a run stuck on a workflow task
 * that a bad deploy makes fail on every attempt is reset to its last completed workflow task, and
 * the new run completes on the fixed code; a real saga whose compensation failed is reset to just
 * before it, and the compensation runs again. Test workflows on this file's own task queue; the
 * workflow ids have the order form (`order-<uuid>`) the command selects by.
 */
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';
import { NativeConnection, Worker, bundleWorkflowCode, type WorkflowBundle } from '@temporalio/worker';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { createSimulatedGateway } from '../../activities/payment-gateway.js';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { connectTemporal, startOrderSaga } from '../../lib/temporal.js';
import { resetOrders } from '../../ops/reset.js';
import { createPool, DEFAULT_SESSION_LIMITS } from '../../db/pool.js';
import { createOrderWorker } from '../../workers/temporal-worker.js';
import { WORKFLOW_TYPE, orderWorkflowId, type OrderSagaResult } from '../../workflows/contract.js';
import * as activities from '../fixtures/bare-activities.js';
import { waitFor } from '../helpers/amqp.js';
import { createProduct, createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { quietTemporalRuntime, sagaBundle } from '../workflow/fixtures/harness.js';
import { createOrder, orderStatus, outboxTypes, sagaInput, stockOf } from '../workflow/fixtures/orders.js';

const { EventType } = proto.temporal.api.enums.v1;
const workflowsPath = (name: string) => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
const quiet = () => undefined;
const bundlerLogger = {
  log: quiet,
  trace: quiet,
  debug: quiet,
  info: quiet,
  warn: quiet,
  error: console.error,
};

const config = loadConfig();
const logger = createLogger('ops-reset-test', 'silent');
const taskQueue = `ops-reset-${randomUUID()}`;
const REASON = 'test: bad deploy fixed';
let connection: NativeConnection;
let ordersDb: TestDatabase;
let client: Client;
let broken: WorkflowBundle;
let fixed: WorkflowBundle;
const started: string[] = [];

beforeAll(async () => {
  quietTemporalRuntime();
  [connection, client, broken, fixed, ordersDb] = await Promise.all([
    NativeConnection.connect({ address: config.TEMPORAL_ADDRESS }),
    connectTemporal(config),
    bundleWorkflowCode({
      workflowsPath: workflowsPath('ops-reset-broken-workflows.ts'),
      logger: bundlerLogger,
    }),
    bundleWorkflowCode({
      workflowsPath: workflowsPath('ops-reset-fixed-workflows.ts'),
      logger: bundlerLogger,
    }),
    createTestDatabase(),
  ]);
});

afterAll(async () => {
  for (const workflowId of started)
    await client?.workflow
      .getHandle(workflowId)
      .terminate('test cleanup')
      .catch(() => undefined);
  await connection?.close();
  await client?.connection.close();
  await ordersDb?.drop();
});

const deps = () => ({ client, pool: ordersDb.pool, logger });

const worker = (workflowBundle: WorkflowBundle) =>
  Worker.create({ connection, namespace: config.TEMPORAL_NAMESPACE, taskQueue, workflowBundle, activities });

async function startSaga(queue = taskQueue): Promise<string> {
  // An order of this database: a reset refuses a run of an order it does not know.
  const sku = await createProduct(ordersDb.pool, { stock: 5 });
  const { orderId } = await createOrder(ordersDb.pool, { items: [{ sku, qty: 1 }] });
  await client.workflow.start('opsResetSaga', {
    workflowId: orderWorkflowId(orderId),
    taskQueue: queue,
    args: [1],
  });
  started.push(orderWorkflowId(orderId));
  return orderId;
}

const eventTypes = async (workflowId: string, runId?: string) =>
  ((await client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? []).map((e) => e.eventType);

/** Runs the saga on the broken code until its workflow task fails: the run is stuck. */
async function stuckOnBrokenTask(workflowId: string): Promise<void> {
  await (
    await worker(broken)
  ).runUntil(
    waitFor(async () => (await eventTypes(workflowId)).includes(EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED), {
      what: 'the broken workflow task to fail',
      intervalMs: 100,
    }),
  );
}

test('a run stuck on a failing workflow task is reset to its last completed task and completes on the fixed code', async () => {
  const orderId = await startSaga();
  const workflowId = orderWorkflowId(orderId);
  await stuckOnBrokenTask(workflowId);
  const stuckRunId = (await client.workflow.getHandle(workflowId).describe()).runId;

  const dryRun = await resetOrders(deps(), {
    selection: { orderIds: [orderId] },
    reason: REASON,
    dryRun: true,
  });
  expect(dryRun.items).toEqual([
    {
      id: orderId,
      ok: true,
      outcome: 'would-reset',
      details: expect.objectContaining({
        previousRunId: stuckRunId,
        previousStatus: 'RUNNING',
        // Started, task scheduled, started, completed (step 1 scheduled), …: the last completed task.
        resetToEventId: 4,
        resetToEventType: 'WORKFLOW_TASK_COMPLETED',
      }),
    },
  ]);
  expect((await client.workflow.getHandle(workflowId).describe()).runId).toBe(stuckRunId);

  const result = await resetOrders(deps(), { selection: { orderIds: [orderId] }, reason: REASON });
  expect(result.ok).toBe(true);
  const [item] = result.items;
  expect(item).toMatchObject({ id: orderId, ok: true, outcome: 'reset' });
  const newRunId = item!.details!.newRunId as string;
  expect(newRunId).toEqual(expect.any(String));
  expect(newRunId).not.toBe(stuckRunId);
  expect((await client.workflow.getHandle(workflowId, stuckRunId).describe()).status.name).toBe('TERMINATED');

  const outcome = await (
    await worker(fixed)
  ).runUntil(client.workflow.getHandle(workflowId, newRunId).result());
  expect(outcome).toBe(2);

  // Now closed: refused without --closed, reset with it.
  const refused = await resetOrders(deps(), { selection: { orderIds: [orderId] }, reason: REASON });
  expect(refused.ok).toBe(false);
  expect(refused.items[0]).toMatchObject({ ok: false, outcome: 'refused', details: { status: 'COMPLETED' } });
  expect(refused.items[0]!.reason).toMatch(/--closed/);
  const reopened = await resetOrders(deps(), {
    selection: { orderIds: [orderId] },
    reason: REASON,
    closed: true,
  });
  expect(reopened.items[0]).toMatchObject({
    ok: true,
    outcome: 'reset',
    details: { previousStatus: 'COMPLETED' },
  });
});

test('resetting a run that had begun to give back says it cannot complete the order, and that a retry runs it again', async () => {
  // The bad deploy threw after the saga had started its compensation (undo_run): the order is
  // RESERVED, undone. The reset's forward steps would refuse; the operator is told so, dry run too.
  const orderId = await startSaga();
  await stuckOnBrokenTask(orderWorkflowId(orderId));
  await ordersDb.pool.query(`update orders set status = 'RESERVED', undo_run = 1 where id = $1::uuid`, [
    orderId,
  ]);
  const says = expect.stringMatching(/cannot complete it .* orders retry .* once it has ended/);

  const dryRun = await resetOrders(deps(), {
    selection: { orderIds: [orderId] },
    reason: REASON,
    dryRun: true,
  });
  expect(dryRun.items).toEqual([expect.objectContaining({ ok: true, outcome: 'would-reset', reason: says })]);
  const result = await resetOrders(deps(), { selection: { orderIds: [orderId] }, reason: REASON });
  expect(result.items).toEqual([expect.objectContaining({ ok: true, outcome: 'reset', reason: says })]);
});

test('two operators resetting the same stuck run at once make one new run, not a reset of the reset', async () => {
  const orderId = await startSaga();
  const workflowId = orderWorkflowId(orderId);
  await stuckOnBrokenTask(workflowId);
  const reset = () => resetOrders(deps(), { selection: { orderIds: [orderId] }, reason: REASON });
  const results = await Promise.all([reset(), reset()]);
  const newRuns = new Set(results.flatMap((r) => r.items.map((i) => i.details?.newRunId)).filter(Boolean));
  expect(newRuns.size).toBe(1);
  const [newRunId] = [...newRuns] as string[];
  // The run the first reset made is the current one, still open: nobody terminated it.
  const current = await client.workflow.getHandle(workflowId).describe();
  expect({ runId: current.runId, status: current.status.name }).toEqual({
    runId: newRunId,
    status: 'RUNNING',
  });
});

/** An order whose saga (run 1) is stuck on a failing workflow task. */
async function stuckOrder() {
  const sku = await createProduct(ordersDb.pool, { stock: 5 });
  const order = await createOrder(ordersDb.pool, { items: [{ sku, qty: 1 }] });
  const workflowId = orderWorkflowId(order.orderId);
  await client.workflow.start('opsResetSaga', { workflowId, taskQueue, args: [1] });
  started.push(workflowId);
  await stuckOnBrokenTask(workflowId);
  return { order, workflowId };
}

test("a reset racing a retry refuses once the retry moved the order on: the retry's new run is never terminated", async () => {
  const { order, workflowId } = await stuckOrder();
  const stuckRunId = (await client.workflow.getHandle(workflowId).describe()).runId;

  // An operator's retry holds the order's row (as retryOrder does) while the reset is asked for, and
  // commits run 2, which the bridge would start next. Temporal resets terminate the current run,
  // whichever run they name: reset now, and run 2 would be killed the moment it started.
  const retry = await ordersDb.pool.connect();
  try {
    await retry.query('begin');
    await retry.query('select 1 from orders where id = $1::uuid for update', [order.orderId]);
    const answer = resetOrders(deps(), { selection: { orderIds: [order.orderId] }, reason: REASON });
    await new Promise((resolve) => setTimeout(resolve, 500));
    await retry.query('update orders set run = 2 where id = $1::uuid', [order.orderId]);
    await retry.query('commit');
    const result = await answer;
    expect(result.items[0]).toMatchObject({
      ok: false,
      outcome: 'refused',
      reason: expect.stringMatching(/moved on to run 2/),
      details: { orderRun: 2, executionRun: 1 },
    });
  } finally {
    retry.release();
  }
  expect((await client.workflow.getHandle(workflowId).describe()).runId).toBe(stuckRunId); // not reset
  // Its dry run says what the real one does, and is named a dry run.
  const dryRun = await resetOrders(deps(), {
    selection: { orderIds: [order.orderId] },
    reason: REASON,
    dryRun: true,
  });
  expect(dryRun).toMatchObject({
    command: 'reset --dry-run',
    items: [{ ok: false, outcome: 'refused', reason: expect.stringMatching(/moved on to run 2/) }],
  });
});

test("keeps the order's row locked through a slow reset, past the session's idle-in-transaction limit: a retry waits for it", async () => {
  const { order } = await stuckOrder();

  // The operator's pool ends a transaction idle for 1.5 s (60 s by default), and Temporal takes 3 s
  // to answer the reset: the reset's transaction sits idle, holding the row, for longer than that.
  const cliPool = createPool(ordersDb.url, 2, 'ops-reset-test-cli', {
    limits: { ...DEFAULT_SESSION_LIMITS, idleInTransactionTimeoutMs: 1_500 },
  });
  const slowReset = async (request: Parameters<Client['workflowService']['resetWorkflowExecution']>[0]) => {
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    return client.workflowService.resetWorkflowExecution(request);
  };
  const slowService = Object.create(client.workflowService, { resetWorkflowExecution: { value: slowReset } });
  const slowClient = Object.create(client, { workflowService: { value: slowService } }) as Client;
  try {
    const answer = resetOrders(
      { client: slowClient, pool: cliPool, logger },
      { selection: { orderIds: [order.orderId] }, reason: REASON },
    );
    await new Promise((resolve) => setTimeout(resolve, 2_200)); // past the idle limit, reset still out
    // An operator's retry takes the same row lock (as retryOrder does): it must wait for the reset.
    const retry = await ordersDb.pool.connect();
    try {
      await retry.query('begin');
      const asked = Date.now();
      await retry.query('select 1 from orders where id = $1::uuid for update', [order.orderId]);
      const waited = Date.now() - asked;
      await retry.query('rollback');
      expect(waited).toBeGreaterThan(300); // the reset still held the row
    } finally {
      retry.release();
    }
    expect((await answer).items[0]).toMatchObject({ ok: true, outcome: 'reset' });
  } finally {
    await cliPool.end();
  }
});

test('a reset the server applies after the command stopped waiting: the row stays locked until its run shows, and it is reported done', async () => {
  const { order } = await stuckOrder();
  // The answer is lost (the command's deadline passes, or the connection drops) while the server
  // goes on to apply the reset 2 s later. Let go of the row then, and a retry could start a new run
  // that the late reset would terminate.
  const lateReset = (request: Parameters<Client['workflowService']['resetWorkflowExecution']>[0]) => {
    setTimeout(() => void client.workflowService.resetWorkflowExecution(request), 2_000);
    return Promise.reject(Object.assign(new Error('simulated: deadline exceeded'), { code: 4 }));
  };
  const lateService = Object.create(client.workflowService, { resetWorkflowExecution: { value: lateReset } });
  const lateClient = Object.create(client, { workflowService: { value: lateService } }) as Client;
  const before = await client.workflow.getHandle(orderWorkflowId(order.orderId)).describe();
  const answer = resetOrders(
    { client: lateClient, pool: ordersDb.pool, logger },
    { selection: { orderIds: [order.orderId] }, reason: REASON },
  );
  await new Promise((resolve) => setTimeout(resolve, 500)); // the reset's answer already lost
  const retry = await ordersDb.pool.connect();
  try {
    await retry.query('begin');
    await retry.query('select 1 from orders where id = $1::uuid for update', [order.orderId]);
    // By the time a retry gets the row, the reset's run is the workflow's current one.
    const now = await client.workflow.getHandle(orderWorkflowId(order.orderId)).describe();
    expect(now.runId).not.toBe(before.runId);
    await retry.query('rollback');
  } finally {
    retry.release();
  }
  const item = (await answer).items[0]!;
  expect(item).toMatchObject({ ok: true, outcome: 'reset', details: { previousRunId: before.runId } });
  expect(item.details!.newRunId).not.toBe(before.runId);
});

test('refuses a run whose order this database does not know (another system sharing the namespace), dry run too, before looking at the run (a closed one is not advised --closed)', async () => {
  const orderId = randomUUID(); // a workflow order-<id> with no such order here
  const workflowId = orderWorkflowId(orderId);
  await client.workflow.start('opsResetSaga', { workflowId, taskQueue, args: [1] });
  started.push(workflowId);
  await stuckOnBrokenTask(workflowId);
  const stuckRunId = (await client.workflow.getHandle(workflowId).describe()).runId;
  for (const dryRun of [true, false]) {
    const result = await resetOrders(deps(), { selection: { orderIds: [orderId] }, reason: REASON, dryRun });
    expect(result.items).toMatchObject([
      { ok: false, outcome: 'not-found', reason: expect.stringMatching(/no order .* in this database/) },
    ]);
  }
  expect((await client.workflow.getHandle(workflowId).describe()).runId).toBe(stuckRunId); // not reset
  // Closed too: still not ours, not "pass --closed".
  await client.workflow.getHandle(workflowId).terminate('test: the other system closed it');
  const closed = await resetOrders(deps(), {
    selection: { orderIds: [orderId] },
    reason: REASON,
    dryRun: true,
  });
  expect(closed.items).toMatchObject([{ ok: false, outcome: 'not-found' }]);
  expect(closed.items[0]!.reason).not.toMatch(/--closed/);
});

test('--query leaves alone an order saga whose order this database does not have, and says so when no run it matched is ours', async () => {
  const orderId = randomUUID();
  const workflowId = orderWorkflowId(orderId);
  // An order saga of another system sharing the namespace, on a queue no worker here polls.
  await client.workflow.start(WORKFLOW_TYPE, {
    workflowId,
    taskQueue: `ops-reset-nobody-polls-${randomUUID()}`,
    args: [sagaInput({ orderId, customerId: 'C-ELSEWHERE', correlationId: 'c', total: '1.00' })],
  });
  started.push(workflowId);
  const query = `WorkflowId = "${workflowId}"`;
  await waitFor(async () => (await client.workflow.count(query)).count === 1, {
    what: 'the run in visibility',
  });
  for (const dryRun of [true, false]) {
    const result = await resetOrders(deps(), { selection: { query }, reason: REASON, dryRun });
    // Left alone; and since it is the only run the query matched, the wrong database is suspected.
    expect(result.ok).toBe(false);
    expect(result.items).toMatchObject([
      { id: orderId, ok: true, outcome: 'not-ours' },
      { ok: false, outcome: 'none-ours', reason: expect.stringMatching(/DATABASE_URL/) },
    ]);
  }
});

test('refuses runs that are not stuck or have not started a task, and reports unknown orders', async () => {
  const waiting = await startSaga(`ops-reset-nobody-polls-${randomUUID()}`);
  const unknown = randomUUID();

  const result = await resetOrders(deps(), {
    selection: { orderIds: [waiting, unknown] },
    reason: REASON,
    concurrency: 2,
  });

  expect(result.ok).toBe(false);
  expect(result.items.map((i) => [i.id, i.ok, i.outcome])).toEqual([
    [waiting, false, 'refused'],
    [unknown, false, 'not-found'],
  ]);
  expect(result.items[0]!.reason).toMatch(/no workflow task .* has started yet/);
  await expect(resetOrders(deps(), { selection: { orderIds: [waiting] }, reason: ' ' })).rejects.toThrow(
    /needs a reason/,
  );
  for (const [reason, problem] of [
    ['bad deploy\u0000', /control characters/],
    ['x'.repeat(501), /at most 500/],
    ['fixed \u202e', /bidirectional/],
  ] as const) {
    await expect(resetOrders(deps(), { selection: { orderIds: [waiting] }, reason })).rejects.toThrow(
      problem,
    );
  }
});

test('--query acts on order sagas only, whatever else the namespace runs', async () => {
  // A workflow of another type with an order-like id: the query matches it, the command must not.
  const other = orderWorkflowId(await startSaga(`ops-reset-nobody-polls-${randomUUID()}`));
  const query = `WorkflowId = "${other}"`;
  await waitFor(async () => (await client.workflow.count(query)).count === 1, {
    what: 'the other workflow in visibility',
  });
  // Also when the query closes the narrowing's parenthesis to widen it again.
  for (const selection of [{ query }, { query: `${query}) OR (${query}` }]) {
    const result = await resetOrders(deps(), { selection, reason: REASON, dryRun: true, healthy: true });
    expect(result.items).toEqual([]);
  }
});

test('a saga whose compensation failed is reset to just before it: the compensation runs again and the stock comes back', async () => {
  const db = await createTestDatabase();
  const sagaQueue = `ops-reset-saga-${randomUUID()}`;
  try {
    const real = createActivities({ pool: db.pool, gateway: createSimulatedGateway(config), logger });
    let broken = true; // the stock service refuses for good, until an operator fixes it
    // A worker runs once: one for the failed run, another for the run after the reset.
    const sagaWorker = async () =>
      createOrderWorker({
        config,
        pool: db.pool,
        logger,
        connection,
        taskQueue: sagaQueue,
        workflowBundle: await sagaBundle(),
        activityOverrides: {
          releaseInventory: async (args) => {
            if (broken) throw ApplicationFailure.nonRetryable('simulated: stock service refuses');
            return real.releaseInventory(args);
          },
        },
      });
    const sku = await createProduct(db.pool, { stock: 5 });
    const order = await createOrder(db.pool, {
      items: [{ sku, qty: 2 }],
      customerId: `${config.PAYMENT_DECLINE_CUSTOMER_PREFIX}-reset-${Date.now()}`,
    });
    const workflowId = orderWorkflowId(order.orderId);
    started.push(workflowId);

    // Declined, and the stock's release failed: the run fails, the stock is still held.
    await (
      await sagaWorker()
    ).runUntil(async () => {
      await startOrderSaga(client, sagaInput(order), sagaQueue);
      const failure = await client.workflow
        .getHandle(workflowId)
        .result()
        .catch((err: unknown) => err);
      expect(String((failure as Error).cause)).toMatch(/CompensationFailed|compensation failed/);
    });
    expect(await stockOf(db.pool, sku)).toBe(3);
    const failedRunId = (await client.workflow.getHandle(workflowId).describe()).runId;

    broken = false;
    const result = await resetOrders(
      { client, pool: db.pool, logger },
      { selection: { orderIds: [order.orderId] }, reason: 'test: stock service fixed', closed: true },
    );
    expect(result.items).toEqual([
      expect.objectContaining({
        ok: true,
        outcome: 'reset',
        details: expect.objectContaining({
          previousRunId: failedRunId,
          previousStatus: 'FAILED',
        }),
      }),
    ]);
    const newRunId = result.items[0]!.details!.newRunId as string;

    // The new run releases the stock this time and ends as the decline should have.
    const outcome = await (
      await sagaWorker()
    ).runUntil(client.workflow.getHandle(workflowId, newRunId).result() as Promise<OrderSagaResult>);
    expect(outcome).toMatchObject({ orderId: order.orderId, status: 'PAYMENT_FAILED' });
    expect(await stockOf(db.pool, sku)).toBe(5);
    expect(await orderStatus(db.pool, order.orderId)).toBe('PAYMENT_FAILED');
    expect(await outboxTypes(db.pool, order.orderId)).toEqual([
      'inventory.reserved',
      'payment.failed',
      'inventory.released',
    ]);
    // Reset to its last task instead, the new run would replay the failure and fail again.
    expect(result.items[0]!.details!.resetTo).toMatch(
      /^just before the failed compensation releaseInventory/,
    );
  } finally {
    await db.drop();
  }
});
