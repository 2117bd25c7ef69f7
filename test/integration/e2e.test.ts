/**
 * The whole system in one process against the real servers: the API (in-process), the outbox
 * publisher, the bridge and the Temporal worker, over a fresh database, this test's own exchange,
 * queues and task queue, and the Temporal dev server. Orders go in through HTTP; what comes out is
 * checked where a user would look: the order's status, the events on the exchange, the workflow.
 */
import { randomUUID } from 'node:crypto';
import type { ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dlqName } from '../../lib/amqp/topology.js';
import type { EventEnvelope } from '../../lib/events.js';
import type { OrderStatus } from '../../domain/order.js';
import { orderWorkflowId } from '../../workflows/contract.js';
import { openObserver, waitFor, type Observer } from '../helpers/amqp.js';
import { createProduct } from '../helpers/db.js';
import { startSystem, type TestSystem } from '../helpers/system.js';
import { stockOf } from '../workflow/fixtures/orders.js';

let system: TestSystem;
let observer: Observer;
let published: ConsumeMessage[];

beforeAll(async () => {
  observer = await openObserver();
  system = await startSystem();
  // Bound before any order is placed, so it sees every event of this test's exchange.
  published = await observer.observe(system.config.AMQP_EXCHANGE, '#');
});

afterAll(async () => {
  await system?.stop();
  await observer?.close();
});

/** Events for one order as they arrived on the exchange, waiting until `expected` types are there. */
async function eventsOf(orderId: string, expected: string[]): Promise<ConsumeMessage[]> {
  return waitFor(
    () => {
      const mine = published.filter(
        (m) => (JSON.parse(m.content.toString()) as EventEnvelope).orderId === orderId,
      );
      return mine.length >= expected.length ? mine : undefined;
    },
    { what: `events ${expected.join(', ')} for order ${orderId}` },
  );
}

const envelope = (m: ConsumeMessage) => JSON.parse(m.content.toString()) as EventEnvelope;

async function workflowRuns(orderId: string): Promise<string[]> {
  const runs: string[] = [];
  for await (const wf of system.temporal.workflow.list({
    query: `WorkflowId = "${orderWorkflowId(orderId)}"`,
  })) {
    runs.push(wf.runId);
  }
  return runs;
}

describe('the seed scenarios, end to end', () => {
  it('stock available: COMPLETED, with every event on acme.events and a confirmation e-mail', async () => {
    const correlationId = randomUUID();
    const placed = await system.placeOrder(
      { customer_id: 'C100', email: 'c100@example.com', items: [{ sku: 'TSHIRT-BLK-M', qty: 1 }] },
      { 'x-correlation-id': correlationId },
    );
    expect(placed.status).toBe(202);

    const order = await system.waitForFinal(placed.body.id);
    expect(order.status).toBe('COMPLETED');
    expect(order.notifications.map((n) => n.kind)).toEqual(['order-completed']);

    const expected = ['order.placed', 'inventory.reserved', 'payment.completed', 'order.completed'];
    const messages = await eventsOf(order.id, expected);
    expect(messages.map((m) => m.fields.routingKey)).toEqual(expected);
    for (const m of messages) {
      const event = envelope(m);
      // One correlation id from the HTTP request to every event.
      expect(event.correlationId).toBe(correlationId);
      expect(m.properties).toMatchObject({
        messageId: event.id,
        type: event.type,
        correlationId,
        contentType: 'application/json',
        deliveryMode: 2,
      });
    }
    expect(envelope(messages[2]!).data).toMatchObject({
      amount: '19.99',
      currency: 'USD',
      customerId: 'C100',
    });

    // The order row is COMPLETED a moment before the run closes (completeOrder is its last step).
    const handle = system.temporal.workflow.getHandle(orderWorkflowId(order.id));
    expect(await handle.result()).toMatchObject({ status: 'COMPLETED' });
    const description = await handle.describe();
    expect(description.status.name).toBe('COMPLETED');
    expect(description.taskQueue).toBe(system.config.TEMPORAL_TASK_QUEUE);
    // What the Web UI shows: the run's summary, and each step named for what it does. (A charge that
    // captures at once starts no deadline timer; the timer's "payment deadline 10m" is checked in
    // test/workflow/order-saga.test.ts.)
    expect(await description.staticSummary()).toBe('customer C100 · 1 × TSHIRT-BLK-M · 19.99 USD');
    const history = await handle.fetchHistory();
    const steps = history.events!.filter((e) => !e.workflowExecutionStartedEventAttributes);
    const summaries = steps.flatMap((e) => {
      const data = e.userMetadata?.summary?.data;
      return data ? [JSON.parse(Buffer.from(data).toString()) as string] : [];
    });
    expect(summaries).toEqual([
      'reserve stock',
      'charge the payment',
      'e-mail the customer: order completed',
      'mark the order completed',
    ]);
  });

  it('not enough stock: OUT_OF_STOCK, stock untouched, an out-of-stock e-mail', async () => {
    const placed = await system.placeOrder({
      customer_id: 'C200',
      email: 'c200@example.com',
      items: [{ sku: 'TSHIRT-GRY-S', qty: 999 }],
    });
    expect(placed.status).toBe(202);

    const order = await system.waitForFinal(placed.body.id);
    expect(order.status).toBe('OUT_OF_STOCK');
    // The status changes first (with its event), then the saga sends the e-mail.
    await waitFor(
      async () =>
        (await system.getOrder(order.id)).notifications.map((n) => n.kind).join() === 'out-of-stock',
      { what: 'the out-of-stock e-mail' },
    );

    const messages = await eventsOf(order.id, ['order.placed', 'order.out_of_stock']);
    expect(messages.map((m) => m.fields.routingKey)).toEqual(['order.placed', 'order.out_of_stock']);
    expect(envelope(messages[1]!).data).toMatchObject({
      unavailable: [{ sku: 'TSHIRT-GRY-S', requested: 999, available: 5 }],
    });
    expect(await stockOf(system.db.pool, 'TSHIRT-GRY-S')).toBe(5);
  });
});

describe('concurrency and duplicates', () => {
  it('50 concurrent orders for a SKU with 10 in stock: exactly 10 reserved, stock 0', async () => {
    const sku = await createProduct(system.db.pool, { stock: 10, price: '5.00' });
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        system.placeOrder({
          customer_id: `RUSH-${i}`,
          email: `rush${i}@example.com`,
          items: [{ sku, qty: 1 }],
        }),
      ),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(202));

    const orders = await Promise.all(responses.map((r) => system.waitForFinal(r.body.id, 90_000)));
    const count = (status: OrderStatus) => orders.filter((o) => o.status === status).length;
    expect(count('COMPLETED')).toBe(10);
    expect(count('OUT_OF_STOCK')).toBe(40);
    expect(await stockOf(system.db.pool, sku)).toBe(0);
  });

  it('one Idempotency-Key posted twice at once: one order, one workflow', async () => {
    const key = `key-${randomUUID()}`;
    const body = { customer_id: 'C300', email: 'c300@example.com', items: [{ sku: 'MUG-WHT', qty: 2 }] };
    const [a, b] = await Promise.all([
      system.placeOrder(body, { 'idempotency-key': key }),
      system.placeOrder(body, { 'idempotency-key': key }),
    ]);
    expect(a.body.id).toBe(b.body.id);
    expect([a.status, b.status].sort()).toEqual([200, 202]);

    const order = await system.waitForFinal(a.body.id);
    expect(order.status).toBe('COMPLETED');
    const { rows } = await system.db.pool.query(
      'select count(*)::int as n from idempotency_keys where key = $1',
      [key],
    );
    expect(rows[0].n).toBe(1);
    await waitFor(async () => (await workflowRuns(order.id)).length === 1, {
      what: 'the workflow in visibility',
    });
  });

  it('a duplicated order.placed starts no second workflow run and is acked', async () => {
    const placed = await system.placeOrder({
      customer_id: 'C400',
      email: 'c400@example.com',
      items: [{ sku: 'TSHIRT-BLK-M', qty: 1 }],
    });
    const order = await system.waitForFinal(placed.body.id);
    const handle = system.temporal.workflow.getHandle(orderWorkflowId(order.id));
    const { runId } = await handle.describe();
    const [original] = await eventsOf(order.id, ['order.placed']);

    // The broker redelivers (or the outbox publishes again after a crash): twice more, same event.
    for (let i = 0; i < 2; i++) {
      observer.channel.publish(
        system.config.AMQP_EXCHANGE,
        'order.placed',
        original!.content,
        original!.properties,
      );
    }
    await waitFor(
      () =>
        system.bridgeLog.filter((l) => l.orderId === order.id && l.outcome === 'already-started').length ===
        2,
      { what: 'the bridge to handle both duplicates' },
    );
    await waitFor(async () => (await observer.messageCount(system.config.BRIDGE_QUEUE)) === 0, {
      what: 'the bridge queue to be empty (both acked)',
    });
    expect(await observer.messageCount(dlqName(system.config.BRIDGE_QUEUE))).toBe(0);
    expect((await handle.describe()).runId).toBe(runId);
    await waitFor(async () => (await workflowRuns(order.id)).length === 1, { what: 'exactly one run' });
  });
});
