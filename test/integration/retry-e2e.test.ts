/**
 * Replaying failed orders, end to end on the real servers: an order fails because the payment
 * gateway stayed down past the deadline (PAYMENT_FAILED, no money taken); the gateway comes back; an
 * operator retries it (the CLI's function and the API's route) and it completes as a second run of
 * `order-<id>`, charged once, stock counted once, with `order.retried` … `order.completed` on the
 * exchange. Plus: what a retry refuses, that retrying twice starts one run, replay of the order's
 * history, a dead-lettered order.placed that comes back with `dlq redrive`, and reconcile.
 */
import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import type { ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities, type Activities } from '../../activities/index.js';
import { createLogger } from '../../lib/logger.js';
import { eventPublishOptions } from '../../lib/amqp/publisher.js';
import { buildEvent, type EventEnvelope } from '../../lib/events.js';
import { redriveDeadLetters } from '../../ops/dlq.js';
import { reconcileOrders } from '../../ops/reconcile.js';
import { replayOrders } from '../../ops/replay.js';
import { retryOrders } from '../../ops/retry.js';
import { orderWorkflowId } from '../../workflows/contract.js';
import { openObserver, waitFor, type Observer } from '../helpers/amqp.js';
import { bearer } from '../helpers/auth.js';
import { createProduct } from '../helpers/db.js';
import { cancelWording } from '../../domain/cancel.js';
import { chargeKey } from '../../domain/payment.js';
import { startSystem, type TestSystem } from '../helpers/system.js';
import { ledgerGateway } from '../workflow/fixtures/gateways.js';
import { createOrder, stockOf } from '../workflow/fixtures/orders.js';

const gateway = ledgerGateway('down');
const logger = createLogger('retry-e2e', 'silent');
let system: TestSystem;
let observer: Observer;
let published: ConsumeMessage[];
/** While set, completeOrder fails for good, as a bad deploy of it would; else it is the real step. */
let completeOrderBroken = false;

beforeAll(async () => {
  observer = await openObserver();
  let real: Activities | undefined;
  const completeOrder: Activities['completeOrder'] = async (args) => {
    if (completeOrderBroken)
      throw ApplicationFailure.nonRetryable('completeOrder: a bad deploy', 'BadDeploy');
    real ??= createActivities({ pool: system.db.pool, gateway, logger });
    return real.completeOrder(args);
  };
  system = await startSystem(
    { PAYMENT_DEADLINE_MS: '2000' },
    { gateway, activityOverrides: { completeOrder } },
  );
  published = await observer.observe(system.config.AMQP_EXCHANGE, '#');
});
afterAll(async () => {
  await system?.stop();
  await observer?.close();
});

const deps = () => ({ pool: system.db.pool, client: system.temporal, logger });

function eventTypes(orderId: string): string[] {
  return published
    .map((m) => JSON.parse(m.content.toString()) as EventEnvelope)
    .filter((e) => e.orderId === orderId)
    .map((e) => e.type);
}

async function runsOf(orderId: string): Promise<Array<{ runId: string; status: string }>> {
  const runs: Array<{ runId: string; status: string }> = [];
  for await (const w of system.temporal.workflow.list({
    query: `WorkflowId = '${orderWorkflowId(orderId)}'`,
  })) {
    runs.push({ runId: w.runId, status: w.status.name });
  }
  return runs;
}

async function failedOrder(): Promise<{ id: string; sku: string }> {
  gateway.mode = 'down';
  const sku = await createProduct(system.db.pool, { stock: 5, price: '12.00' });
  const placed = await system.placeOrder({
    customer_id: 'C-RETRY',
    email: 'r@example.com',
    items: [{ sku, qty: 2 }],
  });
  const order = await system.waitForFinal(placed.body.id);
  expect(order.status).toBe('PAYMENT_FAILED');
  // The status is final before the compensations ran; the run's end says they are done.
  await system.temporal.workflow.getHandle(orderWorkflowId(placed.body.id)).result();
  return { id: placed.body.id, sku };
}

/** An order whose last step (completeOrder) failed for good after the charge: its run undid itself. */
async function paidThenFailed(): Promise<{ id: string; sku: string }> {
  gateway.mode = 'up';
  completeOrderBroken = true;
  try {
    const sku = await createProduct(system.db.pool, { stock: 5, price: '12.00' });
    const { body } = await system.placeOrder({
      customer_id: 'C-RETRY-PAID',
      email: 'p@example.com',
      items: [{ sku, qty: 2 }],
    });
    const run1 = system.temporal.workflow.getHandle(orderWorkflowId(body.id));
    await waitFor(
      () =>
        run1.describe().then(
          () => true,
          () => undefined,
        ),
      { what: 'run 1 started' },
    );
    await expect(run1.result()).rejects.toThrow('Workflow execution failed');
    return { id: body.id, sku };
  } finally {
    completeOrderBroken = false; // the fix is deployed
  }
}

describe('retry', () => {
  it('a payment that failed because the gateway stayed down completes once the gateway is back', async () => {
    const { id, sku } = await failedOrder();
    expect(await stockOf(system.db.pool, sku)).toBe(5); // released by the failed run
    expect(gateway.held.size).toBe(0); // no money taken

    gateway.mode = 'up';
    const result = await retryOrders(deps(), { selection: { orderIds: [id] }, reason: 'gateway back' });
    expect(result).toMatchObject({
      ok: true,
      items: [{ id, ok: true, outcome: 'retried', details: { run: 2 } }],
    });

    const order = await system.waitForFinal(id);
    expect(order.status).toBe('COMPLETED');
    // The retry's "retried: gateway back" explained the PENDING status only; it does not stay.
    expect(order.statusReason).toBeNull();
    expect(gateway.captures).toBe(1);
    expect([...gateway.held.keys()]).toEqual([`${id}:run-2`]); // charged once, under run 2's key
    expect(await stockOf(system.db.pool, sku)).toBe(3); // counted once
    // The order row is COMPLETED a moment before the run closes, and visibility lags a little more.
    const runs = await waitFor(
      async () => {
        const found = await runsOf(id);
        return found.length === 2 && found.every((r) => r.status !== 'RUNNING') ? found : undefined;
      },
      { what: 'two closed runs in visibility' },
    );
    expect(runs.map((r) => r.status).sort()).toEqual(['COMPLETED', 'COMPLETED']);
    const types = await waitFor(
      () => (eventTypes(id).includes('order.completed') ? eventTypes(id) : undefined),
      {
        what: 'order.completed on the exchange',
      },
    );
    expect(types.slice(types.indexOf('order.retried'))).toEqual([
      'order.retried',
      'inventory.reserved',
      'payment.completed',
      'order.completed',
    ]);
    const notifications = order.notifications.map((n) => n.kind);
    expect(notifications).toEqual(['payment-failed', 'order-completed']);
  });

  it('an order whose last step failed after the charge (refunded, stock back, left PAID) completes when retried', async () => {
    const { id, sku } = await paidThenFailed();
    // The failed run gave everything back; the order row stays PAID (its capture refunded).
    expect((await system.getOrder(id)).status).toBe('PAID');
    expect(await stockOf(system.db.pool, sku)).toBe(5);
    expect(gateway.held.has(chargeKey(id, 1))).toBe(false); // run 1's charge, refunded

    const result = await retryOrders(deps(), {
      selection: { orderIds: [id] },
      reason: 'completeOrder fixed',
    });
    expect(result).toMatchObject({
      ok: true,
      items: [{ id, ok: true, outcome: 'retried', details: { run: 2 } }],
    });
    expect((await system.waitForFinal(id)).status).toBe('COMPLETED');
    expect(await stockOf(system.db.pool, sku)).toBe(3); // sold once
    expect([...gateway.held.keys()].filter((k) => k.startsWith(id))).toEqual([`${id}:run-2`]);
    const types = await waitFor(
      () => (eventTypes(id).includes('order.completed') ? eventTypes(id) : undefined),
      { what: 'order.completed on the exchange' },
    );
    expect(types).toEqual([
      'order.placed',
      'inventory.reserved',
      'payment.completed',
      'payment.refunded',
      'inventory.released',
      'order.retried',
      'inventory.reserved',
      'payment.completed',
      'order.completed',
    ]);
  });

  it('an order whose last step failed after the charge is listed by reconcile, and --fix leaves the new charge to an operator', async () => {
    const { id } = await paidThenFailed();
    // Listed with what ends it, which is not --fix's to do.
    const listed = await reconcileOrders(deps(), { olderThanMs: 0 });
    expect(listed.items.find((i) => i.id === id)).toMatchObject({
      ok: false,
      outcome: 'stalled',
      reason: expect.stringMatching(/; not for --fix: .*charges the customer again; an operator decides/),
    });
    const fixed = await reconcileOrders(deps(), { olderThanMs: 0, fix: true });
    expect(fixed.items.find((i) => i.id === id)).toMatchObject({
      ok: false,
      outcome: 'refused',
      reason: expect.stringMatching(/not retried by --fix: .*charges the customer again/),
    });
    expect(eventTypes(id)).not.toContain('order.retried');
    expect((await system.getOrder(id)).status).toBe('PAID');
  });

  it('an order whose last step failed after the charge is cancelled when its customer asks instead, and never retried', async () => {
    const { id, sku } = await paidThenFailed();
    const asCustomer = bearer(await system.auth.customerToken('C-RETRY-PAID'));
    const cancel = await system.app.request(`/orders/${id}/cancel`, {
      method: 'POST',
      headers: { ...asCustomer, 'content-type': 'application/json' },
      body: JSON.stringify({ code: 'changed_mind' }),
    });
    expect(cancel.status).toBe(200);
    expect(await cancel.json()).toEqual({
      id,
      status: 'CANCELLED',
      via: 'database',
      reason: cancelWording('changed_mind'),
    });
    expect(await stockOf(system.db.pool, sku)).toBe(5);
    expect(gateway.held.has(chargeKey(id, 1))).toBe(false); // run 1's charge, refunded
    const retried = await retryOrders(deps(), { selection: { orderIds: [id] }, reason: 'test' });
    expect(retried).toMatchObject({ ok: false, items: [{ id, outcome: 'refused' }] });
  });

  it('through the API: 202 with the order, and a second retry while it runs starts nothing more', async () => {
    const { id } = await failedOrder();
    gateway.mode = 'up';
    const post = () => system.app.request(`/orders/${id}/retry`, { method: 'POST' });
    const [first, second] = await Promise.all([post(), post()]);
    expect([first.status, second.status]).toEqual([202, 202]);
    const answer = (await first.json()) as {
      run: number;
      payment: { run: number } | null;
      payments: Array<{ run: number; failureReason: string | null }>;
    };
    expect(answer.run).toBe(2);
    // The current run's payment: none yet (run 1's failed one is not run 2's), or run 2's own.
    expect(answer.payment === null || answer.payment.run === 2).toBe(true);
    // Run 1's is still there to read why it failed.
    expect(answer.payments[0]).toMatchObject({
      run: 1,
      failureReason: expect.stringMatching(/DEADLINE_EXCEEDED/),
    });
    expect((await system.waitForFinal(id)).status).toBe('COMPLETED');
    // Visibility trails the run by a moment on a real server (on PostgreSQL, in Temporal Cloud).
    await waitFor(async () => (await runsOf(id)).length === 2, { what: 'both runs to be listed' });

    // Completed now: refused, with the reason, over HTTP and from the CLI function.
    const again = await post();
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({
      error: { code: 'retry_refused', message: expect.stringMatching(/COMPLETED/) },
    });
    const refused = await retryOrders(deps(), { selection: { orderIds: [id] }, reason: 'again' });
    expect(refused).toMatchObject({ ok: false, items: [{ ok: false, outcome: 'refused' }] });
    expect(await runsOf(id)).toHaveLength(2);
    expect((await system.app.request(`/orders/${randomUUID()}/retry`, { method: 'POST' })).status).toBe(404);
  });

  it('refuses an order whose run is still going', async () => {
    gateway.mode = 'down';
    const sku = await createProduct(system.db.pool, { stock: 5 });
    const placed = await system.placeOrder({
      customer_id: 'C-BUSY',
      email: 'b@example.com',
      items: [{ sku, qty: 1 }],
    });
    await waitFor(async () => (await system.getOrder(placed.body.id)).status === 'RESERVED', {
      what: 'reserved',
    });
    // Typed in capitals too: still the same order, whose run is still going.
    for (const id of [placed.body.id, placed.body.id.toUpperCase()]) {
      const res = await retryOrders(deps(), { selection: { orderIds: [id] }, reason: 'too early' });
      expect(res.items[0], id).toMatchObject({
        ok: false,
        outcome: 'refused',
        reason: expect.stringMatching(/still going/),
      });
      const viaApi = await system.app.request(`/orders/${id}/retry`, { method: 'POST' });
      expect(viaApi.status, id).toBe(409);
      expect(await viaApi.json()).toMatchObject({
        error: { code: 'retry_refused', message: expect.stringMatching(/still going/) },
      });
    }
    await system.waitForFinal(placed.body.id);
    const { rows } = await system.db.pool.query('select run from orders where id = $1', [placed.body.id]);
    expect(rows).toEqual([{ run: 1 }]); // never retried
  });
});

describe('replay', () => {
  it("replays a failed-then-retried order's histories against the current code", async () => {
    const { id } = await failedOrder();
    gateway.mode = 'up';
    await retryOrders(deps(), { selection: { orderIds: [id] }, reason: 'gateway back' });
    await system.waitForFinal(id);
    const result = await replayOrders(
      { client: system.temporal, logger },
      { selection: { query: `OrderId = "${id}"` } },
    );
    expect(result.ok).toBe(true);
    expect(result.items.map((i) => i.outcome)).toEqual(['replayed', 'replayed']);
  });
});

describe('dead-lettered order.placed', () => {
  it('comes back with dlq redrive once its cause is fixed, and completes', async () => {
    gateway.mode = 'up';
    const sku = await createProduct(system.db.pool, { stock: 5 });
    // The message arrives before its order exists (a replica that lagged): dead-lettered, not started.
    const orderId = randomUUID();
    const event = buildEvent('order.placed', {
      id: randomUUID(),
      orderId,
      correlationId: `corr-${orderId}`,
      data: { customerId: 'C-DLQ', email: 'd@example.com', items: [], total: '10.00', currency: 'USD' },
    });
    observer.channel.publish(
      system.config.AMQP_EXCHANGE,
      'order.placed',
      Buffer.from(JSON.stringify(event)),
      eventPublishOptions({ id: event.id, type: event.type, correlationId: event.correlationId }),
    );
    const dlq = `${system.config.BRIDGE_QUEUE}.dlq`;
    await waitFor(async () => (await observer.messageCount(dlq)) === 1, { what: 'the message in the DLQ' });

    // The cause is fixed: the order is there now.
    await createOrder(system.db.pool, { items: [{ sku, qty: 1 }], orderId, customerId: 'C-DLQ' });
    const connection = observer.admin;
    const redriven = await redriveDeadLetters(
      { connection, config: system.config, logger },
      { queue: system.config.BRIDGE_QUEUE },
    );
    expect(redriven.items).toMatchObject([{ id: event.id, ok: true, outcome: 'redriven' }]);
    expect((await system.waitForFinal(orderId)).status).toBe('COMPLETED');
  });
});

describe('reconcile', () => {
  it('finds an order whose order.placed never started a run, and --fix sets it going', async () => {
    gateway.mode = 'up';
    const sku = await createProduct(system.db.pool, { stock: 5 });
    // An order whose order.placed was published but lost (its queue purged by mistake).
    const order = await createOrder(system.db.pool, { items: [{ sku, qty: 1 }] });
    const event = buildEvent('order.placed', {
      id: randomUUID(),
      orderId: order.orderId,
      correlationId: order.correlationId,
      data: {
        customerId: order.customerId,
        email: 'x@example.com',
        items: [],
        total: order.total,
        currency: 'USD',
      },
    });
    await system.db.pool.query(
      `insert into event_outbox (event_id, type, order_id, payload, status, published_at)
       values ($1::uuid, 'order.placed', $2::uuid, $3::jsonb, 'PUBLISHED', now())`,
      [event.id, order.orderId, JSON.stringify(event)],
    );
    await system.db.pool.query(
      `update orders set updated_at = now() - interval '10 minutes' where id = $1::uuid`,
      [order.orderId],
    );

    const found = await reconcileOrders(deps(), { olderThanMs: 5 * 60_000 });
    expect(found.ok).toBe(false);
    expect(found.items).toMatchObject([
      {
        id: order.orderId,
        outcome: 'stalled',
        reason: expect.stringMatching(/never started .*; --fix sends its event again$/),
        details: { cause: 'not-started' },
      },
    ]);

    // While messages wait in the bridge's queue (a backlog), the event is most likely among them:
    // reported queued, and --fix sends nothing again.
    const backlog = `test.reconcile.backlog.${randomUUID()}`;
    const channel = await observer.admin.createChannel();
    await channel.assertQueue(backlog, { durable: false });
    channel.sendToQueue(backlog, Buffer.from('{}'));
    const bridgeQueue = { connection: async () => observer.admin, queue: backlog };
    try {
      await waitFor(async () => (await channel.checkQueue(backlog)).messageCount === 1, {
        what: 'the backlog',
      });
      for (const fix of [false, true]) {
        const queued = await reconcileOrders({ ...deps(), bridgeQueue }, { olderThanMs: 5 * 60_000, fix });
        expect(queued).toMatchObject({ ok: true, items: [{ id: order.orderId, outcome: 'queued' }] });
        expect(queued.items[0]!.reason).toMatch(/1 message\(s\) still wait in the bridge's queue/);
      }
      const { rows } = await system.db.pool.query(
        `select status, attempts from event_outbox where event_id = $1::uuid`,
        [event.id],
      );
      expect(rows).toEqual([{ status: 'PUBLISHED', attempts: 0 }]); // not made due again
    } finally {
      await channel.deleteQueue(backlog);
      await channel.close();
    }

    const fixed = await reconcileOrders(deps(), { olderThanMs: 5 * 60_000, fix: true });
    expect(fixed).toMatchObject({ ok: true, items: [{ id: order.orderId, outcome: 'republished' }] });
    expect((await system.waitForFinal(order.orderId)).status).toBe('COMPLETED');
    const after = await reconcileOrders(deps(), { olderThanMs: 0 });
    expect(after.items.filter((i) => i.id === order.orderId)).toEqual([]);
  });

  it('finds an order that ended with money still held and no run settling it, and never retries it', async () => {
    // A PAYMENT_FAILED order whose charge stayed in doubt: its run was terminated (an operator's
    // hand, in the Web UI) while its compensation waited out a gateway outage to void the charge.
    const sku = await createProduct(system.db.pool, { stock: 5 });
    const order = await createOrder(system.db.pool, { items: [{ sku, qty: 1 }], status: 'PAYMENT_FAILED' });
    // And a PAYMENT_FAILED order whose charge was voided: settled, nothing to find.
    const settled = await createOrder(system.db.pool, { items: [{ sku, qty: 1 }], status: 'PAYMENT_FAILED' });
    for (const [id, status] of [
      [order.orderId, 'CHARGING'],
      [settled.orderId, 'VOIDED'],
    ] as const) {
      await system.db.pool.query(
        `insert into payments (order_id, run, amount, currency, charge_key, status)
         values ($1::uuid, 1, 10.00, 'USD', $1::text, $2)`,
        [id, status],
      );
      await system.db.pool.query(
        `update orders set updated_at = now() - interval '10 minutes' where id = $1::uuid`,
        [id],
      );
    }

    for (const fix of [false, true]) {
      const found = await reconcileOrders(deps(), { olderThanMs: 5 * 60_000, fix });
      expect(found.ok).toBe(false);
      const mine = found.items.filter((i) => i.id === order.orderId || i.id === settled.orderId);
      expect(mine).toMatchObject([
        {
          id: order.orderId,
          ok: false,
          outcome: fix ? 'refused' : 'stalled',
          details: { cause: 'money-held', status: 'PAYMENT_FAILED', run: 1 },
        },
      ]);
      expect(mine[0]!.reason).toMatch(/payment of 10\.00 USD is CHARGING, and no run is giving them back/);
      expect(mine[0]!.reason).toContain(`charge key ${order.orderId}`);
      if (!fix) expect(mine[0]!.reason).toMatch(/; --fix leaves it$/);
    }
    // --fix changed nothing: no retry, the charge still on record for an operator to settle.
    const { rows } = await system.db.pool.query(
      `select o.status, o.run, p.status as payment from orders o join payments p on p.order_id = o.id
        where o.id = $1::uuid`,
      [order.orderId],
    );
    expect(rows).toEqual([{ status: 'PAYMENT_FAILED', run: 1, payment: 'CHARGING' }]);
  });

  it('finds an order that ended with its stock still reserved and no run giving it back', async () => {
    // A CANCELLED order whose run was terminated while its stock's release waited out an outage.
    const sku = await createProduct(system.db.pool, { stock: 5 });
    const order = await createOrder(system.db.pool, { items: [{ sku, qty: 1 }], status: 'CANCELLED' });
    await system.db.pool.query(
      `update orders set stock_reserved_at = now() - interval '11 minutes', stock_run = 1,
              updated_at = now() - interval '10 minutes'
        where id = $1::uuid`,
      [order.orderId],
    );
    const found = await reconcileOrders(deps(), { olderThanMs: 5 * 60_000, fix: true });
    const mine = found.items.filter((i) => i.id === order.orderId);
    expect(mine).toMatchObject([
      { ok: false, outcome: 'refused', details: { cause: 'stock-held', status: 'CANCELLED', run: 1 } },
    ]);
    expect(mine[0]!.reason).toMatch(
      /run 1's reservation still holds its stock, and no run is giving them back/,
    );

    // Released (as the compensation records it): nothing to report.
    await system.db.pool.query(`update orders set stock_released_at = now() where id = $1::uuid`, [
      order.orderId,
    ]);
    await system.db.pool.query(
      `update orders set updated_at = now() - interval '10 minutes' where id = $1::uuid`,
      [order.orderId],
    );
    const after = await reconcileOrders(deps(), { olderThanMs: 5 * 60_000 });
    expect(after.items.filter((i) => i.id === order.orderId)).toEqual([]);
  });
});
