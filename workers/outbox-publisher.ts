/**
 * The outbox publisher: moves committed events from `event_outbox` to the `acme.events` exchange.
 *
 * - Wakes on `NOTIFY event_outbox` (a dedicated connection that re-LISTENs after losing its server)
 *   and polls every OUTBOX_POLL_INTERVAL_MS as well, so a missed notification only delays an event.
 * - Claims a batch with `for update skip locked`: any number of instances share the table without
 *   double-claiming, and a crashed instance's rows are free again as soon as its transaction ends.
 *   The claim is the row lock itself, so nothing is ever left "in progress".
 * - Publishes the batch with publisher confirms, each bounded by OUTBOX_PUBLISH_TIMEOUT_MS, and marks
 *   confirmed rows PUBLISHED in the claiming transaction. A failed row gets attempts + 1, last_error
 *   and a backed-off available_at, so a failing row waits instead of looping hot.
 *
 * Delivery is at least once: a row confirmed but not yet marked when the process or PostgreSQL dies
 * is published again; consumers dedupe by event id (= AMQP messageId).
 */
import pg from 'pg';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import { outboxMetrics, Registry, type OutboxMetrics } from '../lib/metrics.js';
import { amqpUser } from '../lib/amqp/connection.js';
import { createEventPublisher, type EventPublisher } from '../lib/amqp/publisher.js';
import { describeError } from '../lib/amqp/consumer.js';
import { type AmqpConnectionManager } from '../lib/amqp/connection.js';
import {
  OUTBOX_CHANNEL,
  claimDueEvents,
  listenForEvents,
  markPublished,
  pendingStats,
  scheduleRetries,
  type OutboxRow,
} from '../db/outbox.js';
import { withTransaction, type Pool, type PoolClient } from '../db/pool.js';
import { consumerQueueSpecs } from '../lib/amqp/topology.js';
import { SpanKind, traceContextHeaders, withSpan } from '../lib/tracing.js';

export type OutboxConfig = Pick<
  Config,
  | 'DATABASE_URL'
  | 'AMQP_URL'
  | 'AMQP_EXCHANGE'
  | 'BRIDGE_QUEUE'
  | 'LOYALTY_QUEUE'
  | 'ANALYTICS_QUEUE'
  | 'OUTBOX_BATCH_SIZE'
  | 'OUTBOX_POLL_INTERVAL_MS'
  | 'OUTBOX_PUBLISH_TIMEOUT_MS'
>;

export interface OutboxPublisherOptions {
  pool: Pool;
  amqp: AmqpConnectionManager;
  config: OutboxConfig;
  logger: Logger;
  /**
   * Where the publisher's metrics go (`acme_outbox_*`; the pending gauges are read from the database
   * when scraped). Default: a registry nobody scrapes.
   */
  registry?: Registry;
  /** Retry delay of a failed row after its first failure; doubles per attempt up to `retryMaxMs`. */
  retryBaseMs?: number;
  retryMaxMs?: number;
}

export interface BatchResult {
  claimed: number;
  published: number;
  failed: number;
}

export class OutboxPublisher {
  private readonly pool: Pool;
  private readonly config: OutboxConfig;
  private readonly logger: Logger;
  private readonly events: EventPublisher;
  private readonly metrics: OutboxMetrics;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;

  private stopping = false;
  private wakeRequested = false;
  private wakeSleeper: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private listener: Promise<void> | undefined;
  private stopSignal!: () => void;
  private readonly stopped = new Promise<void>((resolve) => (this.stopSignal = resolve));

  constructor(opts: OutboxPublisherOptions) {
    this.pool = opts.pool;
    this.config = opts.config;
    this.logger = opts.logger;
    this.metrics = outboxMetrics(opts.registry ?? new Registry(), {
      pendingStats: () => pendingStats(opts.pool),
      logger: opts.logger,
    });
    this.retryBaseMs = opts.retryBaseMs ?? 1000;
    this.retryMaxMs = opts.retryMaxMs ?? 60_000;
    this.events = createEventPublisher(opts.amqp, {
      exchange: opts.config.AMQP_EXCHANGE,
      timeoutMs: opts.config.OUTBOX_PUBLISH_TIMEOUT_MS,
      logger: opts.logger,
      appId: 'acme-outbox',
      // Its own login as `user_id`, validated by the broker: what the subscribers trust.
      userId: amqpUser(opts.config.AMQP_URL),
      // Every subscriber's queue must exist before anything is published, or the topic exchange
      // confirms and drops what has no queue yet: the saga's order.placed before the bridge ever ran,
      // a payment.completed (points) or payment.refunded (points taken back) before loyalty did.
      // Declared in the channel's setup, so again on every reconnect (a queue lost meanwhile is back).
      queues: consumerQueueSpecs(opts.config),
    });
  }

  /** Starts listening and the publish loop; returns at once (it does not wait for the servers). */
  start(): void {
    if (this.loop) throw new Error('outbox publisher already started');
    this.listener = this.listenForever();
    this.loop = this.runLoop();
  }

  /** Finishes the current batch, then stops listening and closes the publishing channel. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.stopSignal();
    this.wake();
    await this.loop;
    await this.listener;
    await this.events.close().catch(() => {});
  }

  /** Publishes up to OUTBOX_BATCH_SIZE due rows; one transaction, rows locked until it ends. */
  async publishBatch(): Promise<BatchResult> {
    // The client sits idle while we wait for confirms; if its server goes away meanwhile,
    // withTransaction keeps that from crashing the process, and the batch rolls back.
    return withTransaction(this.pool, (tx) => this.claimAndPublish(tx));
  }

  private async claimAndPublish(tx: PoolClient): Promise<BatchResult> {
    const rows = await claimDueEvents(tx, this.config.OUTBOX_BATCH_SIZE);
    if (rows.length === 0) return { claimed: 0, published: 0, failed: 0 };

    // One channel keeps publish order; all confirms are awaited together, each with its timeout.
    const outcomes = await Promise.allSettled(rows.map((row) => this.publishRow(row)));
    const published: string[] = [];
    const failedIds: string[] = [];
    const errors: string[] = [];
    outcomes.forEach((outcome, i) => {
      const row = rows[i]!;
      if (outcome.status === 'fulfilled') published.push(row.id);
      else {
        failedIds.push(row.id);
        errors.push(describeError(outcome.reason).slice(0, 1000));
      }
    });

    await markPublished(tx, published);
    // Counted as confirmed by the broker: should the commit below fail, they are published again.
    this.metrics.published(published.length);
    this.metrics.publishFailed(failedIds.length);
    if (failedIds.length > 0) {
      await scheduleRetries(tx, failedIds, errors, { baseMs: this.retryBaseMs, maxMs: this.retryMaxMs });
      this.logger.warn(
        { failed: failedIds.length, firstError: errors[0] },
        'could not publish some events; they will be retried after a backoff',
      );
    }
    this.logger.debug({ claimed: rows.length, published: published.length }, 'outbox batch done');
    return { claimed: rows.length, published: published.length, failed: failedIds.length };
  }

  /** One `publish <type>` span per event, a child of the span that wrote the row. */
  private publishRow(row: OutboxRow): Promise<void> {
    const payload = row.payload;
    const correlationId = stringOr(payload.correlationId) ?? stringOr(row.headers.correlationId);
    const occurredAt = stringOr(payload.occurredAt);
    const attributes = {
      'messaging.system': 'rabbitmq',
      'messaging.operation': 'publish',
      'messaging.destination.name': this.config.AMQP_EXCHANGE,
      'messaging.rabbitmq.destination.routing_key': row.type,
      'messaging.message.id': row.event_id,
      'acme.order_id': stringOr(payload.orderId) ?? '',
    };
    const publish = { kind: SpanKind.PRODUCER, attributes, carrier: row.headers };
    return withSpan(`publish ${row.type}`, publish, () =>
      this.events.publish(
        {
          id: row.event_id,
          type: row.type,
          correlationId,
          occurredAt: occurredAt ? new Date(occurredAt) : row.created_at,
          // The consumers' spans continue from this one (tracing off: the row's headers unchanged).
          headers: { ...row.headers, ...traceContextHeaders() },
        },
        Buffer.from(JSON.stringify(payload)),
      ),
    );
  }

  private wake(): void {
    this.wakeRequested = true;
    this.wakeSleeper?.();
  }

  /** Sleeps `ms`, or less if woken (NOTIFY, stop). */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.wakeRequested || this.stopping) return resolve();
      const done = () => {
        clearTimeout(timer);
        this.wakeSleeper = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeSleeper = done;
    });
  }

  private async runLoop(): Promise<void> {
    const { OUTBOX_BATCH_SIZE: batchSize, OUTBOX_POLL_INTERVAL_MS: pollMs } = this.config;
    let consecutiveErrors = 0;
    while (!this.stopping) {
      this.wakeRequested = false;
      try {
        const result = await this.publishBatch();
        consecutiveErrors = 0;
        // A full batch means more may be due: go again at once. Failed rows were deferred, so this
        // cannot spin on them.
        if (result.claimed === batchSize) continue;
      } catch (err) {
        consecutiveErrors += 1;
        this.logger.error(
          { err: describeError(err), consecutiveErrors },
          'outbox batch failed (is PostgreSQL reachable? check DATABASE_URL); retrying',
        );
        this.wakeRequested = false;
        await this.sleep(Math.min(pollMs * 2 ** (consecutiveErrors - 1), 30_000));
        continue;
      }
      await this.sleep(pollMs);
    }
  }

  /** Keeps one LISTEN connection open, reconnecting with backoff; the poll covers the gaps. */
  private async listenForever(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      const client = new pg.Client({
        connectionString: this.config.DATABASE_URL,
        application_name: 'acme-outbox-listen',
        keepAlive: true,
      });
      const lost = new Promise<string>((resolve) => {
        client.on('error', (err) => resolve(err.message));
        client.on('end', () => resolve('connection ended'));
      });
      try {
        await client.connect();
        client.on('notification', (msg) => {
          if (msg.channel === OUTBOX_CHANNEL) this.wake();
        });
        await listenForEvents(client);
        failures = 0;
        this.logger.info({ channel: OUTBOX_CHANNEL }, 'listening for outbox notifications');
        // Events committed while we were not listening sent their NOTIFY to nobody: look now.
        this.wake();
        const reason = await Promise.race([lost, this.stopped.then(() => 'stopping')]);
        if (!this.stopping) this.logger.warn({ reason }, 'lost the LISTEN connection; reconnecting');
      } catch (err) {
        failures += 1;
        this.logger.warn(
          { err: describeError(err) },
          'cannot LISTEN for outbox notifications; polling meanwhile and retrying',
        );
      } finally {
        await client.end().catch(() => {});
      }
      if (this.stopping) break;
      await Promise.race([
        new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** failures, 15_000)).unref()),
        this.stopped,
      ]);
    }
  }
}

function stringOr(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}
