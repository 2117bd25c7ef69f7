/**
 * The analytics subscriber and `GET /analytics/summary` on the real PostgreSQL and RabbitMQ: events
 * delivered twice, out of order, and from several runs of one order; revenue net of refunds in
 * numeric; a malformed event dead-lettered at once; the route's answers; and, through the whole
 * system, a summary that agrees with the orders and payments tables.
 *
 * The tests share this file's database, so each one places its events in a window of time of its
 * own (an hour in 2001, one per test) and asks the summary about that window only.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../../api/app.js';
import type { AnalyticsSummary } from '../../db/analytics.js';
import { connectAmqp } from '../../lib/amqp/connection.js';
import { DEAD_LETTER_HEADERS } from '../../lib/amqp/consumer.js';
import { dlqName } from '../../lib/amqp/topology.js';
import { eventPublishOptions } from '../../lib/amqp/publisher.js';
import type { Config } from '../../lib/config.js';
import { createRegistry } from '../../lib/metrics.js';
import {
  buildEvent,
  runEventId,
  type EventData,
  type EventEnvelope,
  type EventType,
} from '../../lib/events.js';
import { createAnalyticsSubscriber, paymentFailureLabel } from '../../subscribers/analytics/consumer.js';
import { FINAL_STATUSES } from '../../domain/order.js';
import { orderWorkflowId } from '../../workflows/contract.js';
import { asCaller, testAuth } from '../helpers/auth.js';
import { createProduct, createTestDatabase, type TestDatabase } from '../helpers/db.js';
import {
  captureLogger,
  deleteTopology,
  openObserver,
  shortId,
  TEST_PUBLISHER,
  testConfig,
  waitFor,
  type Observer,
} from '../helpers/amqp.js';
import { parseExposition, sumOf, valueOf } from '../helpers/metrics.js';
import { startSystem } from '../helpers/system.js';

let db: TestDatabase;
let observer: Observer;
let id: string;
let config: Config;
let app: ReturnType<typeof createApp>;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  db = await createTestDatabase();
  observer = await openObserver();
  const auth = await testAuth();
  // The figures span every customer: an operator's.
  app = asCaller(
    createApp({
      pool: db.pool,
      logger: captureLogger().logger,
      workflows: {
        cancel: () => Promise.reject(new Error('no Temporal here')),
        latestRun: () => Promise.reject(new Error('no Temporal here')),
      },
      config: {
        TEMPORAL_UI_URL: 'http://localhost:8233',
        TEMPORAL_NAMESPACE: 'default',
        IDEMPOTENCY_KEY_RETENTION_HOURS: 24,
        EVENT_MAX_AMOUNT: 10_000_000,
      },
      checks: {},
      authenticator: auth.authenticator,
    }),
    await auth.operatorToken(),
  );
});
afterAll(async () => {
  await observer?.close();
  await db?.drop();
});
beforeEach(() => {
  id = shortId();
  // One message at a time: the order the test publishes in is the order the subscriber applies in.
  config = testConfig(id, { DATABASE_URL: db.url, ANALYTICS_PREFETCH: '1' });
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await observer.cleanup(config.AMQP_EXCHANGE, [config.ANALYTICS_QUEUE]);
});

async function startSubscriber(cfg: Config = config, pool = db.pool) {
  const { logger, lines } = captureLogger();
  const amqp = connectAmqp(cfg, { name: `test-analytics-${id}`, logger });
  const registry = createRegistry({ defaultMetrics: false });
  const subscriber = createAnalyticsSubscriber({
    amqp,
    pool,
    config: cfg,
    logger,
    retryDelayMs: () => 100,
    registry,
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await subscriber.stop();
    await amqp.close();
  };
  cleanups.push(stop);
  await subscriber.start();
  /** What the subscriber did with each message it handled, in the order it handled them. */
  const outcomes = () => lines.filter((l) => String(l.msg).startsWith('analytics:'));
  return { lines, outcomes, stop, registry };
}

/** The hour this test's events happen in: its own, so that tests sharing the database don't mix. */
let hourIndex = 0;
function testHour(): { at: (seconds: number) => Date; from: string; to: string; hour: string } {
  const start = Date.UTC(2001, 0, 1) + ++hourIndex * 3600_000;
  return {
    at: (seconds) => new Date(start + seconds * 1000),
    from: new Date(start).toISOString(),
    to: new Date(start + 3600_000).toISOString(),
    hour: new Date(start).toISOString(),
  };
}

/** Builds one order's events, with the ids the core would give them (one per order, run and type). */
function orderEvents(orderId = randomUUID()) {
  const correlationId = `corr-${shortId()}`;
  return {
    orderId,
    event<T extends EventType>(type: T, at: Date, data: EventData[T], run = 1): EventEnvelope<T> {
      const eventId = type === 'order.placed' ? randomUUID() : runEventId(orderId, run, type);
      return buildEvent(type, { id: eventId, orderId, correlationId, occurredAt: at, data });
    },
  };
}

const placedData = (total: string, currency = 'USD'): EventData['order.placed'] => ({
  customerId: 'C1',
  email: 'c1@example.com',
  items: [{ sku: 'SKU-1', qty: 1, unitPrice: total }],
  total,
  currency,
});
const captured = (amount: string, reference: string, currency = 'USD') => ({
  amount,
  currency,
  reference,
  customerId: 'C1',
});
const refunded = (amount: string, reference: string, currency = 'USD') => ({
  amount,
  currency,
  reference,
  reason: 'cancelled by the customer',
});
const declined = (amount: string) => ({
  amount,
  currency: 'USD',
  code: 'DECLINED' as const,
  reason: 'card declined for customer DECLINE-C1 (simulated: id starts with DECLINE)',
});
const completed = (total: string) => ({ customerId: 'C1', total, currency: 'USD' });

function publish(event: EventEnvelope | { type: string; body: Buffer; id: string }): void {
  const content = 'body' in event ? event.body : Buffer.from(JSON.stringify(event));
  observer.channel.publish(
    config.AMQP_EXCHANGE,
    event.type,
    content,
    eventPublishOptions({ id: event.id, type: event.type }, undefined, TEST_PUBLISHER),
  );
}

async function summary(query = ''): Promise<AnalyticsSummary> {
  const res = await app.request(`/analytics/summary${query}`);
  expect(res.status).toBe(200);
  return (await res.json()) as AnalyticsSummary;
}
const windowOf = (t: { from: string; to: string }) =>
  `?from=${encodeURIComponent(t.from)}&to=${encodeURIComponent(t.to)}`;

describe('analytics subscriber', () => {
  it('labels payment failures by code and the leading plain words of the reason', () => {
    expect(paymentFailureLabel('DECLINED', declined('1').reason)).toBe(
      'DECLINED: card declined for customer',
    );
    expect(
      paymentFailureLabel('DECLINED', 'amount 12000.00 USD exceeds the limit of 10000 (simulated)'),
    ).toBe('DECLINED: amount');
    expect(paymentFailureLabel('DEADLINE_EXCEEDED', 'payment not captured within 600000 ms')).toBe(
      'DEADLINE_EXCEEDED: payment not captured within',
    );
    expect(paymentFailureLabel('DECLINED', '42')).toBe('DECLINED');
  });

  it('counts an order once when its events arrive twice', async () => {
    const running = await startSubscriber();
    const t = testHour();
    const o = orderEvents();
    const events = [
      o.event('order.placed', t.at(0), placedData('19.99')),
      o.event('payment.completed', t.at(2), captured('19.99', `ref-${id}`)),
      o.event('order.completed', t.at(3), completed('19.99')),
    ];
    for (const event of events) {
      publish(event);
      publish(event);
    }
    await waitFor(() => running.outcomes().length === 6, { what: 'six deliveries handled' });
    expect(running.outcomes().filter((l) => l.outcome === 'duplicate-event')).toHaveLength(3);

    const s = await summary(windowOf(t));
    expect(s.ordersByHour).toEqual([{ hour: t.hour, status: 'COMPLETED', count: 1 }]);
    expect(s.revenue).toEqual([{ currency: 'USD', captured: '19.99', refunded: '0.00', net: '19.99' }]);
    expect(s.timeToFinal).toEqual({ count: 1, avgSeconds: 3, p50Seconds: 3, p95Seconds: 3 });
    const processed = await db.pool.query(
      `select count(*)::int as n from processed_events where consumer = 'analytics' and event_id = any($1::uuid[])`,
      [events.map((e) => e.id)],
    );
    expect(processed.rows[0].n).toBe(3);
  });

  it('reaches the same state when the events arrive in reverse order', async () => {
    const running = await startSubscriber();
    const t = testHour();
    const a = orderEvents();
    const b = orderEvents();
    // Order a: placed, reserved, paid, completed 90 s later; order b: placed, declined 30 s later.
    const sent = [
      a.event('order.completed', t.at(90), completed('5.00')),
      a.event('payment.completed', t.at(60), captured('5.00', `ref-a-${id}`)),
      b.event('payment.failed', t.at(30), declined('7.00')),
      b.event('inventory.released', t.at(31), { items: [], reason: 'payment failed' }),
      a.event('inventory.reserved', t.at(10), { items: [{ sku: 'SKU-1', qty: 1 }] }),
      b.event('order.placed', t.at(0), placedData('7.00')),
      a.event('order.placed', t.at(0), placedData('5.00')),
    ];
    for (const event of sent) publish(event);
    await waitFor(() => running.outcomes().length === sent.length, { what: 'every event handled' });
    expect(running.outcomes().every((l) => l.outcome === 'applied')).toBe(true);

    const s = await summary(windowOf(t));
    expect(s.ordersByHour).toEqual([
      { hour: t.hour, status: 'COMPLETED', count: 1 },
      { hour: t.hour, status: 'PAYMENT_FAILED', count: 1 },
    ]);
    expect(s.failureReasons).toEqual([{ reason: 'DECLINED: card declined for customer', count: 1 }]);
    // 30 s and 90 s: percentile_cont interpolates, 30 + 0.95 × 60.
    expect(s.timeToFinal).toEqual({ count: 2, avgSeconds: 60, p50Seconds: 60, p95Seconds: 87 });
    const rows = await db.pool.query(
      `select order_id, placed_at, amount::text, currency, final_status from analytics_orders
       where order_id = any($1::uuid[]) order by amount`,
      [[a.orderId, b.orderId]],
    );
    expect(rows.rows).toEqual([
      { order_id: a.orderId, placed_at: t.at(0), amount: '5.00', currency: 'USD', final_status: 'COMPLETED' },
      {
        order_id: b.orderId,
        placed_at: t.at(0),
        amount: '7.00',
        currency: 'USD',
        final_status: 'PAYMENT_FAILED',
      },
    ]);
  });

  it("counts a retried order once, with its latest run's status, whatever the order of arrival", async () => {
    const running = await startSubscriber();
    const t = testHour();
    const handled = (n: number) => waitFor(() => running.outcomes().length === n, { what: `${n} handled` });
    const statusOf = async () => (await summary(windowOf(t))).ordersByHour.map((r) => [r.status, r.count]);

    // In order: run 1 fails; the retry puts it back in progress; run 2 completes.
    const a = orderEvents();
    publish(a.event('order.placed', t.at(0), placedData('10.00')));
    publish(a.event('payment.failed', t.at(5), declined('10.00')));
    await handled(2);
    expect(await statusOf()).toEqual([['PAYMENT_FAILED', 1]]);
    publish(
      a.event('order.retried', t.at(20), {
        run: 2,
        customerId: 'C1',
        previousStatus: 'PAYMENT_FAILED',
        reason: 'again',
      }),
    );
    await handled(3);
    expect(await statusOf()).toEqual([['IN_PROGRESS', 1]]);
    expect((await summary(windowOf(t))).failureReasons).toEqual([]);
    publish(a.event('payment.completed', t.at(25), captured('10.00', `ref-a2-${id}`), 2));
    publish(a.event('order.completed', t.at(26), completed('10.00'), 2));
    await handled(5);
    expect(await statusOf()).toEqual([['COMPLETED', 1]]);

    // Scrambled: run 2's end first, then the retry, then run 1's failure, late: still COMPLETED.
    const b = orderEvents();
    const scrambled = [
      b.event('order.completed', t.at(46), completed('10.00'), 2),
      b.event('order.retried', t.at(40), {
        run: 2,
        customerId: 'C1',
        previousStatus: 'PAYMENT_FAILED',
        reason: 'x',
      }),
      b.event('payment.failed', t.at(35), declined('10.00')),
      b.event('order.placed', t.at(30), placedData('10.00')),
      b.event('payment.completed', t.at(45), captured('10.00', `ref-b2-${id}`), 2),
    ];
    for (const event of scrambled) publish(event);
    await handled(10);
    expect(await statusOf()).toEqual([['COMPLETED', 2]]);
    const late = running.outcomes().find((l) => l.eventId === scrambled[2]!.id);
    expect(late?.outcome).toBe('superseded');

    const s = await summary(windowOf(t));
    expect(s.failureReasons).toEqual([]);
    expect(s.revenue).toEqual([{ currency: 'USD', captured: '20.00', refunded: '0.00', net: '20.00' }]);
    // From placed to the latest run's end: 26 s and 16 s.
    expect(s.timeToFinal).toMatchObject({ count: 2, avgSeconds: 21 });
  });

  it('sums revenue per currency in numeric, net of refunds of announced captures', async () => {
    const running = await startSubscriber();
    const t = testHour();
    const [a, b, c, d] = [orderEvents(), orderEvents(), orderEvents(), orderEvents()];
    const sent = [
      a.event('payment.completed', t.at(1), captured('0.10', `ref-a-${id}`)),
      b.event('payment.completed', t.at(2), captured('0.20', `ref-b-${id}`)),
      b.event('payment.refunded', t.at(3), refunded('0.20', `ref-b-${id}`)),
      // A capture the saga gave back at once, never announced: it took nothing, so it gives nothing back.
      c.event('payment.refunded', t.at(4), refunded('5.00', `ref-c-${id}`)),
      d.event('payment.completed', t.at(5), captured('1000000.01', `ref-d-${id}`, 'EUR')),
    ];
    for (const event of sent) publish(event);
    await waitFor(() => running.outcomes().length === sent.length, { what: 'every payment handled' });

    const s = await summary(windowOf(t));
    expect(s.revenue).toEqual([
      { currency: 'EUR', captured: '1000000.01', refunded: '0.00', net: '1000000.01' },
      { currency: 'USD', captured: '0.30', refunded: '0.20', net: '0.10' },
    ]);
    // Orders seen only through their payments are still orders, in progress as far as we know.
    expect(s.ordersByHour).toEqual([{ hour: t.hour, status: 'IN_PROGRESS', count: 4 }]);
    // The gauges are the summary's figures over all time (the unannounced capture's refund left out).
    const allTime = await summary('?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z');
    const samples = parseExposition(await running.registry.metrics());
    for (const row of allTime.revenue) {
      expect(valueOf(samples, 'acme_analytics_captured_amount', { currency: row.currency })).toBeCloseTo(
        Number(row.captured),
        2,
      );
      expect(valueOf(samples, 'acme_analytics_refunded_amount', { currency: row.currency })).toBeCloseTo(
        Number(row.refunded),
        2,
      );
    }
  });

  it('dead-letters a malformed event at once, with the reason, and records nothing', async () => {
    const running = await startSubscriber();
    const t = testHour();
    const o = orderEvents();
    const event = o.event('payment.completed', t.at(1), captured('42.50', `ref-${id}`));
    publish({
      type: event.type,
      id: event.id,
      body: Buffer.from(JSON.stringify({ ...event, data: { ...event.data, amount: 42.5 } })),
    });
    publish({ type: 'order.placed', id: randomUUID(), body: Buffer.from('{not json') });

    const dlq = dlqName(config.ANALYTICS_QUEUE);
    await waitFor(async () => (await observer.messageCount(dlq)) === 2, { what: 'both messages in the DLQ' });
    await running.stop();
    const dead = await observer.drain(dlq);
    const reasons = dead.map((m) => String(m.properties.headers![DEAD_LETTER_HEADERS.reason]));
    expect(reasons).toEqual(
      expect.arrayContaining([expect.stringMatching(/data\.amount/), expect.stringMatching(/not JSON/)]),
    );
    expect(dead.map((m) => m.properties.headers![DEAD_LETTER_HEADERS.attempts])).toEqual([1, 1]);
    const rows = await db.pool.query('select 1 from analytics_orders where order_id = $1', [o.orderId]);
    expect(rows.rowCount).toBe(0);
    expect(await observer.messageCount(config.ANALYTICS_QUEUE)).toBe(0);
  });
});

describe('GET /analytics/summary', () => {
  it('answers an empty window with empty lists and null statistics', async () => {
    expect(await summary('?from=1990-01-01T00:00:00Z&to=1990-01-02T00:00:00%2B02:00')).toEqual({
      ordersByHour: [],
      revenue: [],
      failureReasons: [],
      timeToFinal: { count: 0, avgSeconds: null, p50Seconds: null, p95Seconds: null },
    });
  });

  it.each([
    ['?from=yesterday', 'from'],
    ['?from=2025-02-30T00:00:00Z', 'from'],
    ['?to=2025-01-31T12:00:00', 'to'],
    ['?from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z', 'to'],
    ['?since=2025-01-01T00:00:00Z', 'since'],
  ])('answers 400 naming the field for %s', async (query, field) => {
    const res = await app.request(`/analytics/summary${query}`);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; fields: Array<{ path: string }> } };
    expect(body.error.code).toBe('validation_failed');
    expect(body.error.fields.map((f) => f.path)).toEqual([field]);
  });

  it('is described in the OpenAPI document', async () => {
    const doc = (await (await app.request('/openapi.json')).json()) as {
      paths: Record<string, { get?: { parameters?: Array<{ name: string }> } }>;
    };
    expect(doc.paths['/analytics/summary']?.get?.parameters?.map((p) => p.name)).toEqual(['from', 'to']);
  });
});

describe('through the whole system', () => {
  it('agrees with the orders and payments tables after a few hundred orders', async () => {
    const system = await startSystem();
    const { db: sysDb, config: sysConfig } = system;
    cleanups.push(async () => {
      await system.stop();
    });
    // Bound before the first order, so it sees every event; its queue is removed before the system stops.
    const running = await startSubscriber(sysConfig, sysDb.pool);
    cleanups.push(async () => {
      await running.stop();
      await deleteTopology(observer.admin, sysConfig.AMQP_EXCHANGE, [sysConfig.ANALYTICS_QUEUE]);
    });

    const scarce = await createProduct(sysDb.pool, { stock: 0, price: '3.00' });
    const body = (n: number) => {
      if (n % 10 === 3)
        return { customer_id: `DECLINE-${n}`, email: 'd@example.com', items: [{ sku: 'MUG-WHT', qty: 1 }] };
      if (n % 10 === 7)
        return { customer_id: `C${n}`, email: 'o@example.com', items: [{ sku: scarce, qty: 1 }] };
      return {
        customer_id: `C${n}`,
        email: 'c@example.com',
        items: [{ sku: 'TSHIRT-BLK-M', qty: 1 + (n % 3) }],
      };
    };
    const ids: string[] = [];
    for (let batch = 0; batch < 10; batch++) {
      const placed = await Promise.all(
        Array.from({ length: 20 }, (_, i) => system.placeOrder(body(batch * 20 + i))),
      );
      for (const p of placed) {
        expect(p.status).toBe(202);
        ids.push(p.body.id);
      }
    }
    // A few cancels right away (before the saga, or by its update, or too late: all fine here).
    await Promise.all(
      ids
        .filter((_, n) => n % 25 === 0)
        .map((orderId) =>
          system.app.request(`/orders/${orderId}/cancel`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: '{}',
          }),
        ),
    );
    const finalCount = async () =>
      (
        await sysDb.pool.query(
          `select count(*)::int as n from orders where status = any($1::text[]) and id = any($2::uuid[])`,
          [[...FINAL_STATUSES], ids],
        )
      ).rows[0].n as number;
    // A cap, not a target: a few hundred sagas take ~40 s on an idle 2-core box, longer on a busy one.
    await waitFor(async () => (await finalCount()) === ids.length, {
      timeoutMs: 180_000,
      intervalMs: 250,
      what: 'every order to reach a final status',
    });

    // A few declined orders are retried, and fail again as run 2: still one order each.
    const { rows: retried } = await sysDb.pool.query<{ id: string }>(
      `select id from orders where status = 'PAYMENT_FAILED' order by id limit 5`,
    );
    expect(retried).toHaveLength(5);
    await Promise.all(
      retried.map(async (order) => {
        await system.temporal.workflow.getHandle(orderWorkflowId(order.id)).result(); // the run has ended
        const res = await system.app.request(`/orders/${order.id}/retry`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{}',
        });
        expect(res.status).toBe(202);
        expect((await system.waitForFinal(order.id)).status).toBe('PAYMENT_FAILED');
      }),
    );

    // Caught up: every event written so far is published and applied (what may still follow a final
    // status, an inventory.released, changes no figure of the summary).
    await waitFor(
      async () => {
        const { rows } = await sysDb.pool.query(
          `select (select count(*) from event_outbox where status = 'PUBLISHED')::int as published,
                  (select count(*) from event_outbox)::int as written,
                  (select count(*) from processed_events where consumer = 'analytics')::int as applied`,
        );
        const r = rows[0] as { published: number; written: number; applied: number };
        return r.published === r.written && r.applied === r.written;
      },
      { timeoutMs: 30_000, what: 'the analytics subscriber to apply every event' },
    );

    const res = await system.app.request('/analytics/summary');
    expect(res.status).toBe(200);
    const sys = (await res.json()) as AnalyticsSummary;

    const byStatus: Record<string, number> = {};
    for (const row of sys.ordersByHour) byStatus[row.status] = (byStatus[row.status] ?? 0) + row.count;
    const orders = await sysDb.pool.query<{ status: string; n: number }>(
      'select status, count(*)::int as n from orders group by status',
    );
    expect(byStatus).toEqual(Object.fromEntries(orders.rows.map((r) => [r.status, r.n])));
    expect(Object.values(byStatus).reduce((x, y) => x + y, 0)).toBe(ids.length);

    const money = await sysDb.pool.query<{
      currency: string;
      captured: string;
      refunded: string;
      net: string;
    }>(
      `select currency::text,
              coalesce(sum(amount) filter (where status in ('CAPTURED', 'REFUNDED')), 0)::numeric(20, 2)::text as captured,
              coalesce(sum(amount) filter (where status = 'REFUNDED'), 0)::numeric(20, 2)::text as refunded,
              coalesce(sum(amount) filter (where status = 'CAPTURED'), 0)::numeric(20, 2)::text as net
       from payments where status in ('CAPTURED', 'REFUNDED') group by currency order by currency`,
    );
    expect(sys.revenue).toEqual(money.rows);

    const failed = Object.entries(byStatus)
      .filter(([status]) => status !== 'COMPLETED')
      .reduce((n, [, count]) => n + count, 0);
    expect(sys.failureReasons.reduce((n, r) => n + r.count, 0)).toBe(failed);
    expect(sys.timeToFinal.count).toBe(ids.length);
    expect(sys.timeToFinal.p50Seconds).toBeGreaterThan(0);
    expect(sys.timeToFinal.p95Seconds).toBeGreaterThanOrEqual(sys.timeToFinal.p50Seconds!);

    // The same figures as metrics on the subscriber's own registry (what Prometheus scrapes).
    const samples = parseExposition(await running.registry.metrics());
    for (const [status, n] of Object.entries(byStatus))
      expect(valueOf(samples, 'acme_analytics_orders', { status }), status).toBe(n);
    expect(valueOf(samples, 'acme_analytics_orders', { status: 'IN_PROGRESS' })).toBe(0);
    for (const row of money.rows) {
      expect(valueOf(samples, 'acme_analytics_captured_amount', { currency: row.currency })).toBeCloseTo(
        Number(row.captured),
        2,
      );
      expect(valueOf(samples, 'acme_analytics_refunded_amount', { currency: row.currency })).toBeCloseTo(
        Number(row.refunded),
        2,
      );
    }
    expect(sumOf(samples, 'acme_analytics_failed_orders')).toBe(failed);
  }, 300_000);
});
