/**
 * The metrics each process exposes (lib/metrics.ts), without any server: every name the dashboard and
 * the alert rules read exists, with each known label value, at 0 before the first event; label sets
 * are bounded; and the counting rules (once per ended order, each attempt timed) hold.
 */
import { describe, expect, it } from 'vitest';
import { createApp } from '../../api/app.js';
import { createActivities } from '../../activities/index.js';
import type { AmqpConnectionManager } from '../../lib/amqp/connection.js';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import {
  ANALYTICS_FAILURE_KINDS,
  ANALYTICS_STATUSES,
  FINISHED_STATUSES,
  METRICS,
  PAYMENT_FAILURE_CODES,
  STEP_OUTCOMES,
  bridgeMetrics,
  consumerMetrics,
  createRegistry,
  outboxMetrics,
  sagaMetrics,
  type Registry,
} from '../../lib/metrics.js';
import { createAnalyticsSubscriber } from '../../subscribers/analytics/consumer.js';
import { createLoyaltySubscriber } from '../../subscribers/loyalty/consumer.js';
import { createBridge } from '../../workers/bridge.js';
import type { Pool } from '../../db/pool.js';
import { parseExposition, select, valueOf, type Sample } from '../helpers/metrics.js';

const config = loadConfig({});
const logger = createLogger('metrics-test', 'silent');
/** Nothing here may do I/O: a touch of a dependency fails the test. */
const untouchable = new Proxy(
  {},
  {
    get: (_, key) => {
      if (key === 'then') return undefined;
      throw new Error(`touched ${String(key)} during start-up`);
    },
  },
);
const scrape = async (registry: Registry): Promise<Sample[]> => parseExposition(await registry.metrics());

/** What each process's `main()` builds, minus its servers. */
async function processRegistries() {
  const api = createRegistry();
  createApp({
    pool: untouchable as Pool,
    logger,
    workflows: untouchable as never,
    config,
    checks: {},
    registry: api,
    authenticator: untouchable as never,
  });

  const outbox = createRegistry();
  outboxMetrics(outbox, { pendingStats: async () => ({ pending: 0, oldestAgeSeconds: 0 }) });

  const bridge = createRegistry();
  createBridge({
    amqp: {} as AmqpConnectionManager, // not connected: the DLQ gauge keeps its 0
    temporal: untouchable as never,
    pool: untouchable as Pool,
    config,
    logger,
    registry: bridge,
  });

  const worker = createRegistry();
  const activities = createActivities({
    pool: untouchable as Pool,
    gateway: untouchable as never,
    logger,
    registry: worker,
  });

  const loyalty = createRegistry();
  createLoyaltySubscriber({
    amqp: {} as AmqpConnectionManager,
    pool: untouchable as Pool,
    config,
    logger,
    registry: loyalty,
  });

  const analytics = createRegistry();
  createAnalyticsSubscriber({
    amqp: {} as AmqpConnectionManager,
    pool: untouchable as Pool,
    config,
    logger,
    registry: analytics,
  });

  return { api, outbox, bridge, worker, loyalty, analytics, activityNames: Object.keys(activities) };
}

describe('metrics at start-up, before any event', async () => {
  const r = await processRegistries();
  const samples = {
    api: await scrape(r.api),
    outbox: await scrape(r.outbox),
    bridge: await scrape(r.bridge),
    worker: await scrape(r.worker),
    loyalty: await scrape(r.loyalty),
    analytics: await scrape(r.analytics),
  };

  it('API: orders accepted, and the orders it ends (a cancel before the saga started)', () => {
    expect(valueOf(samples.api, METRICS.ordersAccepted)).toBe(0);
    for (const status of FINISHED_STATUSES) {
      expect(valueOf(samples.api, METRICS.ordersFinished, { status }), status).toBe(0);
      expect(valueOf(samples.api, `${METRICS.orderDuration}_count`, { status }), status).toBe(0);
    }
  });

  it('outbox publisher: published, failures, pending and the oldest pending age', () => {
    expect(valueOf(samples.outbox, METRICS.outboxPublished)).toBe(0);
    expect(valueOf(samples.outbox, METRICS.outboxPublishFailures)).toBe(0);
    expect(valueOf(samples.outbox, METRICS.outboxPending)).toBe(0);
    expect(valueOf(samples.outbox, METRICS.outboxOldestPendingAge)).toBe(0);
  });

  it("bridge: start lag, and its queue's redeliveries and dead letters", () => {
    expect(valueOf(samples.bridge, `${METRICS.bridgeStartLag}_count`)).toBe(0);
    expect(valueOf(samples.bridge, METRICS.consumerRedeliveries, { queue: 'orders.bridge' })).toBe(0);
    expect(valueOf(samples.bridge, METRICS.dlqMessages, { queue: 'orders.bridge.dlq' })).toBe(0);
  });

  it('analytics subscriber: its queue only', () => {
    expect(valueOf(samples.analytics, METRICS.consumerRedeliveries, { queue: 'analytics.orders' })).toBe(0);
    expect(valueOf(samples.analytics, METRICS.dlqMessages, { queue: 'analytics.orders.dlq' })).toBe(0);
    expect(select(samples.analytics, METRICS.dlqMessages)).toHaveLength(1);
  });

  it('loyalty subscriber: its queue only', () => {
    expect(valueOf(samples.loyalty, METRICS.consumerRedeliveries, { queue: 'loyalty.points' })).toBe(0);
    expect(valueOf(samples.loyalty, METRICS.dlqMessages, { queue: 'loyalty.points.dlq' })).toBe(0);
    expect(select(samples.loyalty, METRICS.dlqMessages)).toHaveLength(1);
  });

  it('worker: every activity with both outcomes, and every final status', () => {
    expect(r.activityNames).toEqual(
      expect.arrayContaining([
        'reserveInventory',
        'chargePayment',
        'failPayment',
        'completeOrder',
        'cancelOrder',
      ]),
    );
    for (const step of r.activityNames)
      for (const outcome of STEP_OUTCOMES)
        expect(valueOf(samples.worker, `${METRICS.sagaStepDuration}_count`, { step, outcome }), step).toBe(0);
    expect(select(samples.worker, `${METRICS.sagaStepDuration}_count`)).toHaveLength(
      r.activityNames.length * STEP_OUTCOMES.length,
    );
    for (const status of FINISHED_STATUSES)
      expect(valueOf(samples.worker, METRICS.ordersFinished, { status }), status).toBe(0);
  });

  it('every process: every metric name of ours, each where it belongs, and Node’s default metrics', () => {
    const names = (s: Sample[]) => new Set(s.map((x) => x.name.replace(/_(bucket|sum|count)$/, '')));
    const ours = (s: Sample[]) => [...names(s)].filter((n) => n.startsWith('acme_')).sort();
    expect(ours(samples.api)).toEqual(
      [METRICS.orderDuration, METRICS.ordersAccepted, METRICS.ordersFinished].sort(),
    );
    expect(ours(samples.outbox)).toEqual(
      [
        METRICS.outboxPublished,
        METRICS.outboxPublishFailures,
        METRICS.outboxPending,
        METRICS.outboxOldestPendingAge,
      ].sort(),
    );
    expect(ours(samples.bridge)).toEqual(
      [
        METRICS.bridgeStartLag,
        METRICS.ordersNotStarted,
        METRICS.ordersOldestNotStartedAge,
        METRICS.ordersHoldingStock,
        METRICS.ordersOldestHoldingStockAge,
        METRICS.consumerRedeliveries,
        METRICS.dlqMessages,
      ].sort(),
    );
    expect(ours(samples.worker)).toEqual(
      [
        METRICS.sagaStepDuration,
        METRICS.ordersFinished,
        METRICS.orderDuration,
        METRICS.paymentFailures,
      ].sort(),
    );
    expect(ours(samples.loyalty)).toEqual([METRICS.consumerRedeliveries, METRICS.dlqMessages].sort());
    expect(ours(samples.analytics)).toEqual(
      [
        METRICS.consumerRedeliveries,
        METRICS.dlqMessages,
        METRICS.analyticsOrders,
        METRICS.analyticsFailures,
      ].sort(),
    );
    // Every metric exists from start-up but the money gauges, labelled by a currency not known before
    // the first payment (test/integration/analytics.test.ts reads them).
    const byCurrency: string[] = [METRICS.analyticsCaptured, METRICS.analyticsRefunded];
    const all = new Set(Object.values(samples).flatMap((s) => ours(s)));
    expect([...all].sort()).toEqual(
      Object.values(METRICS)
        .filter((m) => !byCurrency.includes(m))
        .sort(),
    );
    for (const [process, s] of Object.entries(samples)) {
      expect(names(s).has('process_cpu_user_seconds_total'), process).toBe(true);
      expect(names(s).has('nodejs_eventloop_lag_seconds'), process).toBe(true);
    }
  });

  it('label values are few and known: statuses, steps, outcomes, queue names (never an order id)', () => {
    const allowed: Record<string, (value: string) => boolean> = {
      status: (v) => (ANALYTICS_STATUSES as readonly string[]).includes(v),
      reason: (v) => (ANALYTICS_FAILURE_KINDS as readonly string[]).includes(v),
      step: (v) => r.activityNames.includes(v),
      outcome: (v) => (STEP_OUTCOMES as readonly string[]).includes(v),
      code: (v) => (PAYMENT_FAILURE_CODES as readonly string[]).includes(v),
      queue: (v) => /^(orders\.bridge|loyalty\.points|analytics\.orders)(\.dlq)?$/.test(v),
      le: (v) => v === '+Inf' || Number.isFinite(Number(v)),
    };
    for (const s of Object.values(samples)
      .flat()
      .filter((x) => x.name.startsWith('acme_')))
      for (const [key, value] of Object.entries(s.labels))
        expect(allowed[key]?.(value), `${s.name} ${key}=${value}`).toBe(true);
  });
});

describe('counting', () => {
  it('an ended order counts once per call, with its duration from placed to now', async () => {
    const registry = createRegistry({ defaultMetrics: false });
    const saga = sagaMetrics(registry);
    saga.finished('COMPLETED', new Date('2025-01-01T00:00:00Z'), new Date('2025-01-01T00:00:01.500Z'));
    const s = await scrape(registry);
    expect(valueOf(s, METRICS.ordersFinished, { status: 'COMPLETED' })).toBe(1);
    expect(valueOf(s, METRICS.ordersFinished, { status: 'PAYMENT_FAILED' })).toBe(0);
    expect(valueOf(s, `${METRICS.orderDuration}_sum`, { status: 'COMPLETED' })).toBe(1.5);
    expect(valueOf(s, `${METRICS.orderDuration}_bucket`, { status: 'COMPLETED', le: '1' })).toBe(0);
    expect(valueOf(s, `${METRICS.orderDuration}_bucket`, { status: 'COMPLETED', le: '2' })).toBe(1);
  });

  it('each activity attempt is timed with its outcome, by the failure-policy wrapper', async () => {
    const registry = createRegistry({ defaultMetrics: false });
    const activities = createActivities({
      pool: { connect: () => Promise.reject(new Error('database down')) } as unknown as Pool,
      gateway: untouchable as never,
      logger,
      registry,
    });
    await expect(activities.completeOrder({ orderId: 'o', correlationId: 'c' })).rejects.toThrow();
    const s = await scrape(registry);
    expect(
      valueOf(s, `${METRICS.sagaStepDuration}_count`, { step: 'completeOrder', outcome: 'failed' }),
    ).toBe(1);
    expect(valueOf(s, `${METRICS.sagaStepDuration}_count`, { step: 'completeOrder', outcome: 'ok' })).toBe(0);
    expect(valueOf(s, METRICS.ordersFinished, { status: 'COMPLETED' })).toBe(0);
  });

  it('a group asked for twice on one registry is the same group (no metric registered twice)', () => {
    const registry = createRegistry({ defaultMetrics: false });
    expect(bridgeMetrics(registry)).toBe(bridgeMetrics(registry));
    expect(consumerMetrics(registry)).toBe(consumerMetrics(registry));
    expect(() => sagaMetrics(registry)).not.toThrow();
  });

  it('outbox gauges come from one read per scrape, and keep their value while the read fails', async () => {
    const registry = createRegistry({ defaultMetrics: false });
    let reads = 0;
    let fail = false;
    outboxMetrics(registry, {
      pendingStats: async () => {
        reads += 1;
        if (fail) throw new Error('database down');
        return { pending: 3, oldestAgeSeconds: 42.5 };
      },
    });
    let s = await scrape(registry);
    expect(valueOf(s, METRICS.outboxPending)).toBe(3);
    expect(valueOf(s, METRICS.outboxOldestPendingAge)).toBe(42.5);
    expect(reads).toBe(1);
    fail = true;
    await new Promise((resolve) => setTimeout(resolve, 1_050)); // past the one-scrape cache
    s = await scrape(registry);
    expect(reads).toBe(2);
    expect(valueOf(s, METRICS.outboxPending)).toBe(3);
  });
});
