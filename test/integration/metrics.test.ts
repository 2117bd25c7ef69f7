/**
 * Metrics and probes on the real servers: the system in one process (test/helpers/system.ts), each
 * component with its own registry and probe server on a free port, as if each ran on its own. Orders
 * flow, then each `/metrics` is scraped the way Prometheus does; `/health` and `/ready` answer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { amqpUser, connectAmqp } from '../../lib/amqp/connection.js';
import { createConsumer } from '../../lib/amqp/consumer.js';
import { dlqName } from '../../lib/amqp/topology.js';
import { startProbeServer, type ProbeServer } from '../../lib/http-probe-server.js';
import { METRICS, createRegistry } from '../../lib/metrics.js';
import { postgresProbe, rabbitmqProbe } from '../../lib/probes.js';
import { createLoyaltySubscriber } from '../../subscribers/loyalty/consumer.js';
import { captureLogger, openObserver, waitFor, type Observer } from '../helpers/amqp.js';
import { parseExposition, sumOf, valueOf, type Sample } from '../helpers/metrics.js';
import { startSystem, type TestSystem } from '../helpers/system.js';
import { createOrder } from '../workflow/fixtures/orders.js';

let system: TestSystem;
let observer: Observer;
let loyalty: { stop(): Promise<void>; server: ProbeServer };
const { logger } = captureLogger('warn');

beforeAll(async () => {
  system = await startSystem({}, { probeServers: true });
  observer = await openObserver();
  // The loyalty subscriber is no part of the in-process system: run it here, as its main() does.
  const registry = createRegistry();
  const amqp = connectAmqp(system.config, {
    name: `test-metrics-loyalty-${system.config.AMQP_EXCHANGE}`,
    logger,
  });
  const subscriber = createLoyaltySubscriber({
    amqp,
    pool: system.db.pool,
    config: system.config,
    logger,
    registry,
  });
  await subscriber.start();
  const server = await startProbeServer({
    name: 'loyalty',
    host: '127.0.0.1',
    port: 0,
    registry,
    checks: { postgres: postgresProbe(system.db.pool), rabbitmq: rabbitmqProbe(amqp) },
    logger,
  });
  loyalty = {
    server,
    async stop() {
      await server.close();
      await subscriber.stop();
      await amqp.close();
    },
  };
});
afterAll(async () => {
  await loyalty?.stop();
  await system?.stop();
  await observer?.cleanup(system.config.AMQP_EXCHANGE, [
    system.config.LOYALTY_QUEUE,
    `${system.config.BRIDGE_QUEUE}.flaky`,
  ]);
  await observer?.close();
});

const scrape = async (url: string): Promise<Sample[]> => {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  return parseExposition(await res.text());
};
const scrapeApi = async (): Promise<Sample[]> => {
  const res = await system.app.request('/metrics');
  expect(res.status).toBe(200);
  return parseExposition(await res.text());
};
const order = (customerId: string, sku: string, qty: number) => ({
  customer_id: customerId,
  email: `${customerId.toLowerCase()}@example.com`,
  items: [{ sku, qty }],
});

describe('probe servers', () => {
  it('answer /health and /ready (200, every dependency up) for each process', async () => {
    const servers = { ...system.probes!, loyalty: loyalty.server };
    for (const [name, server] of Object.entries(servers)) {
      const health = await fetch(`${server.url}/health`);
      expect(health.status, name).toBe(200);
      const ready = await fetch(`${server.url}/ready`);
      const body = (await ready.json()) as { status: string; checks: Record<string, { status: string }> };
      expect({ name, status: ready.status, body: body.status }).toEqual({ name, status: 200, body: 'ready' });
      expect(
        Object.values(body.checks).every((c) => c.status === 'up'),
        name,
      ).toBe(true);
    }
    const worker = (await (await fetch(`${system.probes!.worker.url}/ready`)).json()) as { checks: object };
    expect(Object.keys(worker.checks).sort()).toEqual(['postgres', 'temporal', 'worker']);
  });
});

describe('orders that do not start', () => {
  it("show in the bridge's gauges, read from the database, until their run starts", async () => {
    // An order whose order.placed never reached the bridge (Temporal down, a lost event): PENDING,
    // its run not started, for ten minutes.
    const order = await createOrder(system.db.pool, { items: [{ sku: 'TSHIRT-BLK-M', qty: 1 }] });
    await system.db.pool.query(
      `update orders set updated_at = now() - interval '10 minutes' where id = $1::uuid`,
      [order.orderId],
    );
    const gauges = async () => {
      const s = await scrape(system.probes!.bridge.url);
      return {
        waiting: valueOf(s, METRICS.ordersNotStarted) ?? 0,
        oldest: valueOf(s, METRICS.ordersOldestNotStartedAge) ?? 0,
      };
    };
    const stuck = await waitFor(async () => ((await gauges()).waiting >= 1 ? gauges() : undefined), {
      what: 'the waiting order in the gauge',
      intervalMs: 250,
    });
    expect(stuck.oldest).toBeGreaterThanOrEqual(600);

    await system.db.pool.query(`update orders set started_run = 1 where id = $1::uuid`, [order.orderId]);
    await waitFor(async () => (await gauges()).oldest < 600, {
      what: 'the gauge to let it go',
      intervalMs: 250,
    });
  });
});

describe('orders flowing, as each process counts them', () => {
  it('accepted by the API, published by the outbox, started by the bridge, finished by the worker', async () => {
    const placed = [
      order('METRICS-C1', 'TSHIRT-BLK-M', 1),
      order('METRICS-C2', 'TSHIRT-BLK-M', 2),
      order('DECLINE-METRICS', 'TSHIRT-BLK-M', 1),
      order('METRICS-C3', 'TSHIRT-GRY-S', 999),
    ];
    const ids: string[] = [];
    for (const body of placed) {
      const res = await system.placeOrder(body);
      expect(res.status).toBe(202);
      ids.push(res.body.id);
    }
    const statuses = (await Promise.all(ids.map((id) => system.waitForFinal(id)))).map((o) => o.status);
    expect(statuses).toEqual(['COMPLETED', 'COMPLETED', 'PAYMENT_FAILED', 'OUT_OF_STOCK']);

    const api = await scrapeApi();
    expect(valueOf(api, METRICS.ordersAccepted)).toBe(4);

    const worker = await scrape(system.probes!.worker.url);
    expect(valueOf(worker, METRICS.ordersFinished, { status: 'COMPLETED' })).toBe(2);
    expect(valueOf(worker, METRICS.ordersFinished, { status: 'PAYMENT_FAILED' })).toBe(1);
    expect(valueOf(worker, METRICS.ordersFinished, { status: 'OUT_OF_STOCK' })).toBe(1);
    expect(valueOf(worker, METRICS.ordersFinished, { status: 'CANCELLED' })).toBe(0);
    // The decline is the customer's card, not the gateway's health: counted as such.
    expect(valueOf(worker, METRICS.paymentFailures, { code: 'DECLINED' })).toBe(1);
    expect(valueOf(worker, METRICS.paymentFailures, { code: 'DEADLINE_EXCEEDED' })).toBe(0);
    expect(valueOf(worker, `${METRICS.orderDuration}_count`, { status: 'COMPLETED' })).toBe(2);
    expect(valueOf(worker, `${METRICS.orderDuration}_sum`, { status: 'COMPLETED' })).toBeGreaterThan(0);
    expect(sumOf(worker, `${METRICS.sagaStepDuration}_count`, { outcome: 'ok' })).toBeGreaterThan(8);
    expect(
      valueOf(worker, `${METRICS.sagaStepDuration}_count`, { step: 'reserveInventory', outcome: 'ok' }),
    ).toBe(4);
    // The declined charge: an attempt that failed, timed as such.
    expect(
      valueOf(worker, `${METRICS.sagaStepDuration}_count`, { step: 'chargePayment', outcome: 'failed' }),
    ).toBe(1);

    const bridge = await scrape(system.probes!.bridge.url);
    expect(valueOf(bridge, `${METRICS.bridgeStartLag}_count`)).toBe(4);
    expect(valueOf(bridge, `${METRICS.bridgeStartLag}_sum`)).toBeGreaterThan(0);

    // order.placed ×4 and each saga's own events; the last ones may still be on their way.
    const outbox = await waitFor(
      async () => {
        const s = await scrape(system.probes!.outbox.url);
        return valueOf(s, METRICS.outboxPending) === 0 ? s : undefined;
      },
      { what: 'the outbox to be drained', intervalMs: 250 },
    );
    expect(valueOf(outbox, METRICS.outboxPublished)).toBeGreaterThanOrEqual(4 + 2 * 3);
    expect(valueOf(outbox, METRICS.outboxPublishFailures)).toBe(0);
    expect(valueOf(outbox, METRICS.outboxOldestPendingAge)).toBe(0);

    const points = await scrape(loyalty.server.url);
    expect(valueOf(points, METRICS.consumerRedeliveries, { queue: system.config.LOYALTY_QUEUE })).toBe(0);
    expect(valueOf(points, METRICS.dlqMessages, { queue: dlqName(system.config.LOYALTY_QUEUE) })).toBe(0);
  });

  it('a dead-lettered message shows in the DLQ gauge, read from RabbitMQ at scrape time', async () => {
    const dlq = dlqName(system.config.BRIDGE_QUEUE);
    const before = valueOf(await scrape(system.probes!.bridge.url), METRICS.dlqMessages, { queue: dlq });
    expect(before).toBe(0);
    observer.channel.publish(system.config.AMQP_EXCHANGE, 'order.placed', Buffer.from('not an order'));
    await waitFor(
      async () => valueOf(await scrape(system.probes!.bridge.url), METRICS.dlqMessages, { queue: dlq }) === 1,
      { what: `${dlq} to count the malformed message`, intervalMs: 250 },
    );
    expect(await observer.messageCount(dlq)).toBe(1);
  });

  it('a delivery that is not the first counts as a redelivery of its queue', async () => {
    const registry = createRegistry({ defaultMetrics: false });
    const queue = `${system.config.BRIDGE_QUEUE}.flaky`;
    const amqp = connectAmqp(system.config, { name: `test-metrics-flaky-${queue}`, logger });
    let calls = 0;
    const consumer = createConsumer({
      manager: amqp,
      user: amqpUser(system.config.AMQP_URL),
      exchange: system.config.AMQP_EXCHANGE,
      queue,
      routingKeys: ['test.flaky'],
      prefetch: 1,
      maxDeliveries: 5,
      logger,
      retryDelayMs: () => 50,
      registry,
      handle: async () => {
        calls += 1;
        if (calls === 1) throw new Error('first attempt fails');
      },
    });
    try {
      await consumer.start();
      observer.channel.publish(system.config.AMQP_EXCHANGE, 'test.flaky', Buffer.from('{}'));
      await waitFor(() => calls === 2, { what: 'the retried delivery' });
      const samples = parseExposition(await registry.metrics());
      expect(valueOf(samples, METRICS.consumerRedeliveries, { queue })).toBe(1);
    } finally {
      await consumer.stop();
      await amqp.close();
    }
  });
});
