/**
 * Prometheus metrics (prom-client). Each process builds one registry in its `main()` with
 * `createRegistry()` (Node's default process metrics: CPU, memory, event-loop lag, GC) and adds the
 * groups it owns below; the API serves it at `GET /metrics`, the other processes on their probe
 * server (lib/http-probe-server.ts).
 *
 * The names are what the dashboard (deploy/grafana/acme-orders.json) and the rules
 * (deploy/prometheus/rules.yml) read: do not rename them. Every label set is bounded (a status, a
 * step name, a queue name; never an order id), and every series whose label values are known
 * exists at 0 from start-up, so `rate()` and the alerts see it before its first event.
 *
 * Code that counts receives its group as a dependency; when none is given it counts into a throwaway
 * registry, so tests and tools that never scrape pass nothing.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { FINAL_STATUSES, type FinalStatus } from '../domain/order.js';
import type { Logger } from './logger.js';
import type { PaymentFailureCode } from './events.js';

export { Registry };

/** Every metric of ours, by what it measures. */
export const METRICS = {
  ordersAccepted: 'acme_orders_accepted_total',
  ordersFinished: 'acme_orders_finished_total',
  orderDuration: 'acme_order_duration_seconds',
  paymentFailures: 'acme_payment_failures_total',
  outboxPending: 'acme_outbox_pending_events',
  outboxOldestPendingAge: 'acme_outbox_oldest_pending_age_seconds',
  outboxPublished: 'acme_outbox_published_total',
  outboxPublishFailures: 'acme_outbox_publish_failures_total',
  bridgeStartLag: 'acme_bridge_start_lag_seconds',
  ordersNotStarted: 'acme_orders_not_started',
  ordersOldestNotStartedAge: 'acme_orders_oldest_not_started_age_seconds',
  ordersHoldingStock: 'acme_orders_holding_stock_after_end',
  ordersOldestHoldingStockAge: 'acme_orders_oldest_holding_stock_after_end_age_seconds',
  dlqMessages: 'acme_dlq_messages',
  consumerRedeliveries: 'acme_consumer_redeliveries_total',
  sagaStepDuration: 'acme_saga_step_duration_seconds',
  analyticsOrders: 'acme_analytics_orders',
  analyticsCaptured: 'acme_analytics_captured_amount',
  analyticsRefunded: 'acme_analytics_refunded_amount',
  analyticsFailures: 'acme_analytics_failed_orders',
} as const;

/** The statuses a run ends an order in: the `status` label of `acme_orders_finished_total`. */
export const FINISHED_STATUSES: readonly FinalStatus[] = [...FINAL_STATUSES] as FinalStatus[];
/** The `outcome` label of `acme_saga_step_duration_seconds`: the attempt returned, or threw. */
export const STEP_OUTCOMES = ['ok', 'failed'] as const;
export type StepOutcome = (typeof STEP_OUTCOMES)[number];

/** Placed → final: a second when all goes well, up to the payment deadline (10 min) when not. */
const ORDER_DURATION_BUCKETS = [0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600];
/** order.placed occurred → run started: outbox, broker and bridge together. */
const START_LAG_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/** One activity attempt: database steps take milliseconds, a gateway call up to its 20 s timeout. */
const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** A process's registry; with Node's default metrics (no prefix) unless told otherwise. */
export function createRegistry({ defaultMetrics = true }: { defaultMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (defaultMetrics) collectDefaultMetrics({ register: registry });
  return registry;
}

// Each group is created once per registry: asking again returns the same one, so two components of
// one process (the in-process test system, say) never register a metric twice.
const groups = new WeakMap<Registry, Map<string, unknown>>();
function once<T>(registry: Registry, key: string, make: () => T): T {
  let byKey = groups.get(registry);
  if (!byKey) groups.set(registry, (byKey = new Map()));
  if (!byKey.has(key)) byKey.set(key, make());
  return byKey.get(key) as T;
}

// ---------------------------------------------------------------------------------------------------
// Orders: accepted (API), finished (where a run ends: the worker; the API for the cancels it makes in the database)

export interface OrderOutcomeMetrics {
  /** This call moved the order to `status` (never for an idempotent retry that found it there). */
  finished(status: FinalStatus, placedAt: Date, at?: Date): void;
}

export function orderOutcomeMetrics(registry: Registry): OrderOutcomeMetrics {
  return once(registry, 'orders', () => {
    const finished = new Counter({
      name: METRICS.ordersFinished,
      help: 'Orders that reached a final status, by status (one per run that ended the order).',
      labelNames: ['status'] as const,
      registers: [registry],
    });
    const duration = new Histogram({
      name: METRICS.orderDuration,
      help: 'Seconds from the order being placed (orders.created_at) to its final status, by status.',
      labelNames: ['status'] as const,
      buckets: ORDER_DURATION_BUCKETS,
      registers: [registry],
    });
    for (const status of FINISHED_STATUSES) {
      finished.inc({ status }, 0);
      duration.zero({ status });
    }
    return {
      finished(status, placedAt, at = new Date()) {
        finished.inc({ status });
        duration.observe({ status }, Math.max(0, (at.getTime() - placedAt.getTime()) / 1000));
      },
    };
  });
}

export interface ApiMetrics extends OrderOutcomeMetrics {
  /** What `GET /metrics` serves. */
  registry: Registry;
  /** A `POST /orders` answered 202 (a new order; not an idempotent replay). */
  accepted(): void;
}

export function apiMetrics(registry: Registry): ApiMetrics {
  return once(registry, 'api', () => {
    const accepted = new Counter({
      name: METRICS.ordersAccepted,
      help: 'Orders accepted by POST /orders (202).',
      registers: [registry],
    });
    const outcomes = orderOutcomeMetrics(registry);
    return { registry, accepted: () => accepted.inc(), finished: outcomes.finished };
  });
}

// ---------------------------------------------------------------------------------------------------
// Outbox publisher

export interface OutboxPendingStats {
  pending: number;
  /** 0 when nothing is pending. */
  oldestAgeSeconds: number;
}

export interface OutboxMetrics {
  published(count: number): void;
  publishFailed(count: number): void;
}

export function outboxMetrics(
  registry: Registry,
  opts: { pendingStats?: () => Promise<OutboxPendingStats>; logger?: Logger } = {},
): OutboxMetrics {
  return once(registry, 'outbox', () => {
    const published = new Counter({
      name: METRICS.outboxPublished,
      help: 'Outbox events published to RabbitMQ and confirmed by the broker.',
      registers: [registry],
    });
    const failures = new Counter({
      name: METRICS.outboxPublishFailures,
      help: 'Outbox event publishes that failed (nack or no confirm in time); each is retried later.',
      registers: [registry],
    });
    // Read from the database when scraped: one cheap query per scrape, shared by both gauges.
    sampledGauges(registry, opts.pendingStats, 'outbox pending stats', opts.logger, [
      {
        name: METRICS.outboxPending,
        help: 'Events in the outbox not yet published (read from the database at scrape time).',
        value: (s) => s.pending,
      },
      {
        name: METRICS.outboxOldestPendingAge,
        help: 'Age in seconds of the oldest unpublished outbox event; 0 when none (read at scrape time).',
        value: (s) => s.oldestAgeSeconds,
      },
    ]);
    return {
      published(count) {
        if (count > 0) published.inc(count);
      },
      publishFailed(count) {
        if (count > 0) failures.inc(count);
      },
    };
  });
}

// ---------------------------------------------------------------------------------------------------
// Bridge

export interface BridgeMetrics {
  /** A run was started for an event that occurred at `occurredAt`. */
  runStarted(occurredAt: Date, at?: Date): void;
}

/** Orders waiting for their run to start (PENDING, the run not started yet), from the database. */
export interface NotStartedStats {
  waiting: number;
  oldestAgeSeconds: number;
}

/** Orders done with their stock that still hold it (db/orders.ts heldStockStats). */
export interface HeldStockStats {
  orders: number;
  oldestAgeSeconds: number;
}

/**
 * `notStarted`: read at scrape time. Orders accepted whose saga has not started are invisible to
 * Temporal and to the start lag (recorded only once a run starts): while Temporal is down, or the
 * bridge cannot start runs, these gauges are what shows orders piling up.
 * `heldStock`: read at scrape time too. An order whose compensation was stopped (a run terminated by
 * hand) fails no workflow and counts in no outcome: these gauges are what shows its stock, and any
 * money with it, still held.
 */
export function bridgeMetrics(
  registry: Registry,
  opts: {
    notStarted?: () => Promise<NotStartedStats>;
    heldStock?: () => Promise<HeldStockStats>;
    logger?: Logger;
  } = {},
): BridgeMetrics {
  return once(registry, 'bridge', () => {
    const lag = new Histogram({
      name: METRICS.bridgeStartLag,
      help: "Seconds from an order.placed / order.retried event's occurredAt to its workflow run being started.",
      buckets: START_LAG_BUCKETS,
      registers: [registry],
    });
    sampledGauges(registry, opts.notStarted, 'orders not started', opts.logger, [
      {
        name: METRICS.ordersNotStarted,
        help: 'Orders accepted (or retried) whose saga run has not started yet (read from the database at scrape time).',
        value: (s) => s.waiting,
      },
      {
        name: METRICS.ordersOldestNotStartedAge,
        help: 'Seconds the longest-waiting of those orders has waited for its run to start; 0 when none.',
        value: (s) => s.oldestAgeSeconds,
      },
    ]);
    sampledGauges(registry, opts.heldStock, 'orders holding stock after their end', opts.logger, [
      {
        name: METRICS.ordersHoldingStock,
        help: 'Orders that ended without a sale, or whose run was giving back, and still hold their stock (and maybe money) (read from the database at scrape time).',
        value: (s) => s.orders,
      },
      {
        name: METRICS.ordersOldestHoldingStockAge,
        help: 'Seconds since the oldest of those orders last changed; 0 when none.',
        value: (s) => s.oldestAgeSeconds,
      },
    ]);
    return {
      runStarted(occurredAt, at = new Date()) {
        lag.observe(Math.max(0, (at.getTime() - occurredAt.getTime()) / 1000));
      },
    };
  });
}

// ---------------------------------------------------------------------------------------------------
// Queue consumers (lib/amqp/consumer.ts createConsumer: the bridge and the subscribers)

export interface ConsumerMetrics {
  /**
   * Declares a consumer of `queue` whose dead letters go to `dlq`: both series exist at 0 from now,
   * and the DLQ's depth is read with `countDlq` at scrape time.
   */
  watch(queue: string, dlq: string, countDlq: () => Promise<number>): void;
  /** A delivery of `queue` that is not its first (a requeue, or a redelivery after a lost channel). */
  redelivered(queue: string): void;
}

export function consumerMetrics(registry: Registry, opts: { logger?: Logger } = {}): ConsumerMetrics {
  return once(registry, 'consumer', () => {
    const redeliveries = new Counter({
      name: METRICS.consumerRedeliveries,
      help: 'Deliveries that were not the first of their message (retried or redelivered), by queue.',
      labelNames: ['queue'] as const,
      registers: [registry],
    });
    const counters = new Map<string, () => Promise<number | undefined>>();
    const gauge = new Gauge({
      name: METRICS.dlqMessages,
      help: 'Messages waiting in a dead-letter queue, by DLQ name (read from RabbitMQ at scrape time).',
      labelNames: ['queue'] as const,
      registers: [registry],
      async collect() {
        await Promise.all(
          [...counters].map(async ([dlq, count]) => {
            const n = await count();
            if (n !== undefined) this.set({ queue: dlq }, n);
          }),
        );
      },
    });
    return {
      watch(queue, dlq, countDlq) {
        redeliveries.inc({ queue }, 0);
        gauge.set({ queue: dlq }, 0);
        counters.set(dlq, sampler(countDlq, `message count of ${dlq}`, opts.logger));
      },
      redelivered: (queue) => redeliveries.inc({ queue }),
    };
  });
}

// ---------------------------------------------------------------------------------------------------
// Analytics (the analytics subscriber): what it has learnt, read from its tables when scraped

export interface AnalyticsTotalsSample {
  ordersByStatus: ReadonlyArray<{ status: string; count: number }>;
  revenue: ReadonlyArray<{ currency: string; captured: number; refunded: number }>;
  failureReasons: ReadonlyArray<{ reason: string; count: number }>;
}

/** The `status` label of `acme_analytics_orders`: a final status, or still running. */
export const ANALYTICS_STATUSES = [...FINISHED_STATUSES, 'IN_PROGRESS'] as const;
/** The `reason` label of `acme_analytics_failed_orders`: how a run ended other than COMPLETED. */
export const ANALYTICS_FAILURE_KINDS = [
  'declined',
  'deadline_exceeded',
  'out_of_stock',
  'cancelled',
] as const;

export function analyticsMetrics(
  registry: Registry,
  opts: { totals: () => Promise<AnalyticsTotalsSample>; logger?: Logger },
): void {
  once(registry, 'analytics', () => {
    // One read per scrape, shared by the four gauges.
    const totals = sampler(opts.totals, 'analytics totals', opts.logger);
    const orders = new Gauge({
      name: METRICS.analyticsOrders,
      help: "Orders the analytics subscriber has seen, by their latest run's status (IN_PROGRESS: not final yet).",
      labelNames: ['status'] as const,
      registers: [registry],
      async collect() {
        const t = await totals();
        if (!t) return;
        for (const status of ANALYTICS_STATUSES) this.set({ status }, 0);
        for (const row of t.ordersByStatus) this.set({ status: row.status }, row.count);
      },
    });
    for (const status of ANALYTICS_STATUSES) orders.set({ status }, 0);
    const money = (name: string, help: string, pick: 'captured' | 'refunded') =>
      new Gauge({
        name,
        help,
        labelNames: ['currency'] as const,
        registers: [registry],
        async collect() {
          const t = await totals();
          for (const row of t?.revenue ?? []) this.set({ currency: row.currency }, row[pick]);
        },
      });
    money(METRICS.analyticsCaptured, 'Money captured, by currency (payment.completed events).', 'captured');
    money(METRICS.analyticsRefunded, 'Money refunded, by currency (payment.refunded events).', 'refunded');
    const failures = new Gauge({
      name: METRICS.analyticsFailures,
      help: 'Orders whose latest run ended other than COMPLETED, by kind (declined, deadline_exceeded, out_of_stock, cancelled).',
      labelNames: ['reason'] as const,
      registers: [registry],
      async collect() {
        const t = await totals();
        if (!t) return;
        for (const reason of ANALYTICS_FAILURE_KINDS) this.set({ reason }, 0);
        for (const row of t.failureReasons) this.set({ reason: row.reason }, row.count);
      },
    });
    for (const reason of ANALYTICS_FAILURE_KINDS) failures.set({ reason }, 0);
    // The money gauges are labelled by currency, which nobody knows before the first payment.
  });
}

// ---------------------------------------------------------------------------------------------------
// Saga activities (the Temporal worker)

/** The `code` label of `acme_payment_failures_total`: a bounded set, never the gateway's text. */
export const PAYMENT_FAILURE_CODES: readonly PaymentFailureCode[] = ['DECLINED', 'DEADLINE_EXCEEDED'];

export interface SagaMetrics extends OrderOutcomeMetrics {
  /**
   * This call ended the order PAYMENT_FAILED, for `code`: a decline is one customer's card, a
   * deadline passed is the gateway unreachable or failing (what pages someone).
   */
  paymentFailed(code: PaymentFailureCode): void;
  /** Declares the activities: each one's series exist at 0 from now, for both outcomes. */
  steps(names: readonly string[]): void;
  /** One attempt of activity `step` took `seconds`. */
  stepDone(step: string, outcome: StepOutcome, seconds: number): void;
}

export function sagaMetrics(registry: Registry): SagaMetrics {
  return once(registry, 'saga', () => {
    const stepDuration = new Histogram({
      name: METRICS.sagaStepDuration,
      help: 'Seconds per activity attempt of the order saga, by activity name and outcome (ok | failed).',
      labelNames: ['step', 'outcome'] as const,
      buckets: STEP_BUCKETS,
      registers: [registry],
    });
    const paymentFailures = new Counter({
      name: METRICS.paymentFailures,
      help: 'Orders whose payment failed, by code: DECLINED (by the gateway) or DEADLINE_EXCEEDED (no capture in time).',
      labelNames: ['code'] as const,
      registers: [registry],
    });
    for (const code of PAYMENT_FAILURE_CODES) paymentFailures.inc({ code }, 0);
    const outcomes = orderOutcomeMetrics(registry);
    return {
      finished: outcomes.finished,
      paymentFailed: (code) => paymentFailures.inc({ code }),
      steps(names) {
        for (const step of names) for (const outcome of STEP_OUTCOMES) stepDuration.zero({ step, outcome });
      },
      stepDone: (step, outcome, seconds) => stepDuration.observe({ step, outcome }, seconds),
    };
  });
}

// ---------------------------------------------------------------------------------------------------

/** Bound on a read made while a scrape waits (Prometheus gives up on a scrape after 10 s). */
const SAMPLE_TIMEOUT_MS = 2_000;
/** Two gauges of one scrape share one read. */
const SAMPLE_MAX_AGE_MS = 1_000;

/**
 * `read`, at most once a second and never longer than 2 s; undefined when it fails, so the gauge
 * keeps its last value. A failure is logged once when it starts and once when it ends, not per scrape.
 */
/**
 * Gauges read together from one source when scraped (a backlog's size and its oldest item's age):
 * `read` runs at most once per scrape for all of them (`sampler`), and a failing read leaves each at
 * its last value. Without `read` (a process that does not own the source) they stay at 0.
 */
function sampledGauges<T>(
  registry: Registry,
  read: (() => Promise<T>) | undefined,
  what: string,
  logger: Logger | undefined,
  gauges: Array<{ name: string; help: string; value: (stats: T) => number }>,
): void {
  const stats = read ? sampler(read, what, logger) : async () => undefined;
  for (const { name, help, value } of gauges) {
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const s = await stats();
        if (s) this.set(value(s));
      },
    });
  }
}

function sampler<T>(read: () => Promise<T>, what: string, logger?: Logger): () => Promise<T | undefined> {
  let last: { at: number; value: Promise<T | undefined> } | undefined;
  let failing = false;
  return () => {
    if (last && Date.now() - last.at < SAMPLE_MAX_AGE_MS) return last.value;
    const value = withTimeout(read(), SAMPLE_TIMEOUT_MS, what).then(
      (v) => {
        if (failing) logger?.info({ what }, 'metrics: reading works again');
        failing = false;
        return v;
      },
      (err: unknown) => {
        if (!failing) {
          logger?.warn(
            { what, err: err instanceof Error ? err.message : String(err) },
            'metrics: cannot read a gauge; it keeps its last value until this works again',
          );
        }
        failing = true;
        return undefined;
      },
    );
    last = { at: Date.now(), value };
    return value;
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
