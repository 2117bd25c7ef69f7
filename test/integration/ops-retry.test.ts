/**
 * `orders retry --query` (ops/retry.ts) against the real Temporal dev server's visibility: a query
 * matches runs, and each run keeps its own search attributes, so a match can be an earlier run of an
 * order whose latest run no longer matches. Only orders whose latest run matched are retried. The
 * runs are started on a task queue no worker polls and terminated with the search attributes a saga
 * leaves, so the test controls exactly what visibility holds.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { connectTemporal } from '../../lib/temporal.js';
import { retryOrders } from '../../ops/retry.js';
import { SEARCH_ATTRIBUTES, WORKFLOW_TYPE, orderWorkflowId } from '../../workflows/contract.js';
import { waitFor } from '../helpers/wait.js';
import { createProduct, createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrder } from '../workflow/fixtures/orders.js';

const config = loadConfig();
const logger = createLogger('ops-retry-test', 'silent');
const taskQueue = `ops-retry-no-worker-${randomUUID()}`;
let db: TestDatabase;
let client: Client;

beforeAll(async () => {
  [db, client] = await Promise.all([createTestDatabase(), connectTemporal(config)]);
});
afterAll(async () => {
  await client?.connection.close();
  await db?.drop();
});

/** A run of the order's workflow, left open on a task queue no worker polls. */
function openRun(orderId: string, run: number, failure: string) {
  return client.workflow.start(WORKFLOW_TYPE, {
    workflowId: orderWorkflowId(orderId),
    taskQueue,
    args: [{ orderId, customerId: 'C-OPS-RETRY', correlationId: 'c', run }],
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    typedSearchAttributes: new TypedSearchAttributes([
      { key: SEARCH_ATTRIBUTES.OrderId, value: orderId },
      { key: SEARCH_ATTRIBUTES.OrderStatus, value: 'PAYMENT_FAILED' },
      { key: SEARCH_ATTRIBUTES.FailureReason, value: failure },
    ]),
    memo: { correlationId: 'c', run },
  });
}

/** A closed run of the order's workflow, as visibility lists a saga run that ended with `failure`. */
async function closedRun(orderId: string, run: number, failure: string): Promise<string> {
  const handle = await openRun(orderId, run, failure);
  await handle.terminate('test: the run ended');
  return handle.firstExecutionRunId;
}

test('--query retries an order only when its latest run matched, not an earlier one', async () => {
  const sku = await createProduct(db.pool, { stock: 5 });
  const order = await createOrder(db.pool, { items: [{ sku, qty: 1 }], status: 'PAYMENT_FAILED' });
  // Run 1 failed on the deadline (gateway down); an operator retried it; run 2 was DECLINED.
  await db.pool.query('update orders set run = 2, started_run = 2 where id = $1::uuid', [order.orderId]);
  await closedRun(order.orderId, 1, 'DEADLINE_EXCEEDED');
  const run2 = await closedRun(order.orderId, 2, 'DECLINED');
  const query = (reason: string) =>
    `FailureReason = "${reason}" AND WorkflowId = "${orderWorkflowId(order.orderId)}"`;
  await waitFor(async () => {
    const seen = await client.workflow.count(`WorkflowId = "${orderWorkflowId(order.orderId)}"`);
    return seen.count === 2;
  });

  // After the gateway outage: retry what failed on the deadline. Run 2's decline is the customer's
  // card: charging it again is what the operator's filter left out.
  const outage = await retryOrders(
    { pool: db.pool, client, logger },
    { selection: { query: query('DEADLINE_EXCEEDED') }, reason: 'gateway back' },
  );
  expect(outage.items).toEqual([
    expect.objectContaining({
      id: order.orderId,
      ok: false,
      outcome: 'refused',
      reason: expect.stringMatching(/earlier run of this order, not its latest \(run 2, TERMINATED\)/),
      details: { latestRunId: run2, latestStatus: 'TERMINATED', matchedRunIds: [expect.any(String)] },
    }),
  ]);
  const { rows } = await db.pool.query<{ run: number; status: string }>(
    'select run, status from orders where id = $1::uuid',
    [order.orderId],
  );
  expect(rows[0]).toEqual({ run: 2, status: 'PAYMENT_FAILED' });

  // The latest run matching is retried as before.
  const declined = await retryOrders(
    { pool: db.pool, client, logger },
    { selection: { query: query('DECLINED') }, reason: 'customer updated their card', dryRun: true },
  );
  expect(declined.items).toEqual([
    expect.objectContaining({ id: order.orderId, ok: true, outcome: 'would-retry' }),
  ]);
});

test('--query leaves alone the runs of orders this database does not have (another system sharing the namespace), however many; named by id, such an order is not-found', async () => {
  const sku = await createProduct(db.pool, { stock: 5 });
  const ours = await createOrder(db.pool, { items: [{ sku, qty: 1 }], status: 'PAYMENT_FAILED' });
  await db.pool.query('update orders set started_run = 1 where id = $1::uuid', [ours.orderId]);
  const foreign = randomUUID();
  const failure = `TEST-${randomUUID()}`; // this test's runs only
  await closedRun(ours.orderId, 1, failure);
  // The other system's order: its run 1 matched, its latest run 2 did not.
  await closedRun(foreign, 1, failure);
  await closedRun(foreign, 2, 'DECLINED');
  const query = `FailureReason = "${failure}"`;
  await waitFor(
    async () =>
      (await client.workflow.count(`${query} OR WorkflowId = "${orderWorkflowId(foreign)}"`)).count === 3,
  );

  const byQuery = await retryOrders(
    { pool: db.pool, client, logger },
    { selection: { query }, reason: 'gateway back', dryRun: true },
  );
  expect(byQuery.ok).toBe(true);
  expect(byQuery.items.map((i) => [i.id, i.ok, i.outcome]).sort()).toEqual(
    [
      [ours.orderId, true, 'would-retry'],
      [foreign, true, 'not-ours'],
    ].sort(),
  );
  const byId = await retryOrders(
    { pool: db.pool, client, logger },
    { selection: { orderIds: [foreign] }, reason: 'gateway back', dryRun: true },
  );
  expect(byId.ok).toBe(false);
  expect(byId.items).toEqual([expect.objectContaining({ id: foreign, ok: false, outcome: 'not-found' })]);

  // A query whose every run is another system's: most likely the wrong database. Said, and failed.
  const onlyTheirs = await retryOrders(
    { pool: db.pool, client, logger },
    {
      selection: { query: `WorkflowId = "${orderWorkflowId(foreign)}"` },
      reason: 'gateway back',
      dryRun: true,
    },
  );
  expect(onlyTheirs.ok).toBe(false);
  expect(onlyTheirs.items.map((i) => i.outcome)).toEqual(['not-ours', 'none-ours']);
  expect(onlyTheirs.items[1]!.reason).toMatch(/is DATABASE_URL the right database/);
});

test("a retry asks Temporal under the order's row lock: a run re-opened meanwhile (a reset) refuses it", async () => {
  const sku = await createProduct(db.pool, { stock: 5 });
  const order = await createOrder(db.pool, { items: [{ sku, qty: 1 }], status: 'PAYMENT_FAILED' });
  await db.pool.query('update orders set started_run = 1 where id = $1::uuid', [order.orderId]);
  await closedRun(order.orderId, 1, 'DEADLINE_EXCEEDED');

  // An operator's reset holds the order's row (as ops/reset.ts does) while it re-opens run 1; a retry
  // asked for meanwhile must see that run open, not the closed run it would have seen a moment before.
  const reset = await db.pool.connect();
  let reopened: Awaited<ReturnType<typeof openRun>> | undefined;
  try {
    await reset.query('begin');
    await reset.query('select 1 from orders where id = $1::uuid for update', [order.orderId]);
    const answer = retryOrders(
      { pool: db.pool, client, logger },
      { selection: { orderIds: [order.orderId] }, reason: 'gateway back' },
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    reopened = await openRun(order.orderId, 1, 'DEADLINE_EXCEEDED');
    await reset.query('commit');
    const result = await answer;
    expect(result.items).toEqual([
      expect.objectContaining({ id: order.orderId, ok: false, reason: expect.stringMatching(/still going/) }),
    ]);
  } finally {
    reset.release();
    await reopened?.terminate('test cleanup');
  }
  const { rows } = await db.pool.query<{ run: number }>('select run from orders where id = $1::uuid', [
    order.orderId,
  ]);
  expect(rows[0]?.run).toBe(1); // no run 2 beside the re-opened run 1
});
