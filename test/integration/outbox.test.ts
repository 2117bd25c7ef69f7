/**
 * The outbox publisher against the real PostgreSQL and RabbitMQ: properties and routing, NOTIFY
 * wake-up, competing instances, a broker-side connection kill, a lost LISTEN connection, and a
 * publish that cannot be confirmed.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connectAmqp, type AmqpConnectionManager } from '../../lib/amqp/connection.js';
import type { Config } from '../../lib/config.js';
import { buildEvent, type EventEnvelope } from '../../lib/events.js';
import { CLAIM_DUE_EVENTS, enqueueEvent } from '../../db/outbox.js';
import { createPool, withTransaction, type Pool } from '../../db/pool.js';
import { OutboxPublisher } from '../../workers/outbox-publisher.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import {
  captureLogger,
  closeConnectionsNamed,
  openObserver,
  shortId,
  testConfig,
  waitFor,
  type Observer,
} from '../helpers/amqp.js';

let db: TestDatabase;
let observer: Observer;
let id: string;
let config: Config;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  db = await createTestDatabase();
  observer = await openObserver();
});
afterAll(async () => {
  await observer?.close();
  await db?.drop();
});
beforeEach(async () => {
  id = shortId();
  config = testConfig(id, { DATABASE_URL: db.url });
  // Each test starts from an empty outbox: no test publishes another's rows.
  await db.pool.query('delete from event_outbox');
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  // The publisher declares every consumer group's queue: all of them go.
  await observer.cleanup(config.AMQP_EXCHANGE, [
    config.BRIDGE_QUEUE,
    config.LOYALTY_QUEUE,
    config.ANALYTICS_QUEUE,
  ]);
});

function placedEvent(orderId = randomUUID()): EventEnvelope<'order.placed'> {
  return buildEvent('order.placed', {
    id: randomUUID(),
    orderId,
    correlationId: `corr-${shortId()}`,
    data: { customerId: 'C100', email: 'c100@example.com', items: [], total: '10.00', currency: 'USD' },
  });
}

function paymentEvent(): EventEnvelope<'payment.completed'> {
  return buildEvent('payment.completed', {
    id: randomUUID(),
    orderId: randomUUID(),
    correlationId: `corr-${shortId()}`,
    data: { amount: '42.50', currency: 'USD', reference: 'ref-1', customerId: 'C100' },
  });
}

function refundEvent(): EventEnvelope<'payment.refunded'> {
  return buildEvent('payment.refunded', {
    id: randomUUID(),
    orderId: randomUUID(),
    correlationId: `corr-${shortId()}`,
    data: { amount: '42.50', currency: 'USD', reference: 'ref-1', reason: 'order cancelled' },
  });
}

/** Whether `queue` exists (asked on a channel of its own: a 404 closes the channel that asks). */
async function queueExists(queue: string): Promise<boolean> {
  const channel = await observer.admin.createChannel();
  channel.on('error', () => {});
  try {
    await channel.checkQueue(queue);
    return true;
  } catch {
    return false;
  } finally {
    await channel.close().catch(() => {});
  }
}

/** The message ids waiting in `queue`, in order (taken off it); the queue must exist. */
async function waitingIds(queue: string): Promise<string[]> {
  // Checked first: reading a missing queue would close the observer's channel for the later tests.
  expect(await queueExists(queue), `${queue} exists`).toBe(true);
  return (await observer.drain(queue)).map((m) => m.properties.messageId as string);
}

async function insertEvents(pool: Pool, events: EventEnvelope[]): Promise<void> {
  await withTransaction(pool, async (tx) => {
    for (const event of events) await enqueueEvent(tx, event);
  });
}

async function outboxCounts(): Promise<{ pending: number; published: number }> {
  const { rows } = await db.pool.query<{ pending: number; published: number }>(
    `select count(*) filter (where status = 'PENDING')::int as pending,
            count(*) filter (where status = 'PUBLISHED')::int as published
     from event_outbox`,
  );
  return rows[0]!;
}

function newPublisher(opts: { config?: Config; name?: string; pool?: Pool; retryBaseMs?: number } = {}): {
  publisher: OutboxPublisher;
  amqp: AmqpConnectionManager;
  lines: Array<Record<string, unknown>>;
} {
  const cfg = opts.config ?? config;
  const { logger, lines } = captureLogger();
  const amqp = connectAmqp(cfg, { name: opts.name ?? `test-outbox-${id}`, logger });
  const publisher = new OutboxPublisher({
    pool: opts.pool ?? db.pool,
    amqp,
    config: cfg,
    logger,
    retryBaseMs: opts.retryBaseMs ?? 100,
    retryMaxMs: 1000,
  });
  cleanups.push(async () => {
    await publisher.stop();
    await amqp.close();
  });
  return { publisher, amqp, lines };
}

describe('outbox publisher', () => {
  it('declares the bridge queue before publishing: an order.placed sent before any bridge ran waits there', async () => {
    const event = placedEvent();
    await insertEvents(db.pool, [event]);
    newPublisher().publisher.start();
    await waitFor(async () => (await outboxCounts()).published === 1, { what: 'the row to be published' });
    // Nobody consumes yet: a topic exchange would have confirmed and dropped it, were the queue not there.
    const [waiting] = await observer.drain(config.BRIDGE_QUEUE);
    expect(waiting?.properties.messageId).toBe(event.id);
  });

  it('declares every consumer group’s queue before publishing: with no subscriber ever run, loyalty’s and analytics’ events wait in their queues', async () => {
    const placed = placedEvent();
    const completed = paymentEvent();
    const refunded = refundEvent();
    await insertEvents(db.pool, [placed, completed, refunded]);
    for (const queue of [config.BRIDGE_QUEUE, config.LOYALTY_QUEUE, config.ANALYTICS_QUEUE])
      expect(await queueExists(queue), `${queue} before the publisher ran`).toBe(false);

    newPublisher().publisher.start();
    await waitFor(async () => (await outboxCounts()).published === 3, { what: 'the rows to be published' });

    // Only the publisher ran: a topic exchange would have confirmed these and dropped them.
    expect(await waitingIds(config.BRIDGE_QUEUE)).toEqual([placed.id]);
    expect(await waitingIds(config.LOYALTY_QUEUE)).toEqual([completed.id, refunded.id]);
    expect(await waitingIds(config.ANALYTICS_QUEUE)).toEqual([placed.id, completed.id, refunded.id]);
    // With their dead-letter paths, as their subscribers declare them (same arguments, or a 406).
    for (const queue of [config.BRIDGE_QUEUE, config.LOYALTY_QUEUE, config.ANALYTICS_QUEUE])
      expect(await queueExists(`${queue}.dlq`), `${queue}.dlq`).toBe(true);
  });

  it('declares the consumer queues again when it reconnects: a refund published after a loyalty queue was deleted still reaches it', async () => {
    config = testConfig(id, { DATABASE_URL: db.url, OUTBOX_POLL_INTERVAL_MS: '100' });
    const name = `test-outbox-${id}`;
    const { publisher, lines } = newPublisher({ name });
    publisher.start();
    await waitFor(() => queueExists(config.LOYALTY_QUEUE), { what: 'the loyalty queue declared' });

    // The loyalty queue is lost (deleted, a broker that lost it) and the publisher's connection drops.
    await observer.channel.deleteQueue(config.LOYALTY_QUEUE);
    expect(await closeConnectionsNamed(name)).toBe(1);
    await waitFor(() => lines.filter((l) => l.msg === 'connected to RabbitMQ').length >= 2, {
      timeoutMs: 30_000,
      what: 'the reconnect',
    });

    const refunded = refundEvent();
    await insertEvents(db.pool, [refunded]);
    await waitFor(async () => (await outboxCounts()).published === 1, {
      timeoutMs: 30_000,
      what: 'the refund published',
    });
    expect(await waitingIds(config.LOYALTY_QUEUE)).toEqual([refunded.id]);
  });

  it('publishes pending rows with routing key = type and the envelope properties, then marks them PUBLISHED', async () => {
    const seen = await observer.observe(config.AMQP_EXCHANGE, '#');
    const events = [placedEvent(), paymentEvent(), placedEvent()];
    await insertEvents(db.pool, events);
    const { publisher } = newPublisher();

    const result = await publisher.publishBatch();

    expect(result).toEqual({ claimed: 3, published: 3, failed: 0 });
    await waitFor(() => seen.length === 3, { what: '3 messages' });
    for (const event of events) {
      const msg = seen.find((m) => m.properties.messageId === event.id);
      expect(msg, `message for ${event.type}`).toBeDefined();
      expect(msg!.fields.routingKey).toBe(event.type);
      // The event as written, its time the database's (enqueueEvent).
      const sent = JSON.parse(msg!.content.toString()) as EventEnvelope;
      expect(sent).toEqual({ ...event, occurredAt: expect.any(String) });
      expect(msg!.properties).toMatchObject({
        type: event.type,
        correlationId: event.correlationId,
        contentType: 'application/json',
        deliveryMode: 2,
        timestamp: Math.floor(Date.parse(sent.occurredAt) / 1000),
      });
    }
    // Publish order follows outbox order.
    expect(seen.map((m) => m.properties.messageId)).toEqual(events.map((e) => e.id));
    const { rows } = await db.pool.query(
      'select status, published_at, attempts, last_error from event_outbox order by id',
    );
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(row).toMatchObject({ status: 'PUBLISHED', attempts: 0, last_error: null });
      expect(row.published_at).toBeInstanceOf(Date);
    }
    expect(await publisher.publishBatch()).toEqual({ claimed: 0, published: 0, failed: 0 });
  });

  it("stamps each event with the database's clock, whatever the clock of the host that wrote it", async () => {
    // Written by a host whose clock is far behind (an operator's laptop, a worker's skewed VM).
    const skewed = buildEvent('order.retried', {
      id: randomUUID(),
      orderId: randomUUID(),
      correlationId: `corr-${shortId()}`,
      occurredAt: new Date('2000-01-01T00:00:00Z'),
      data: { run: 2, customerId: 'C100', previousStatus: 'PAYMENT_FAILED', reason: 'test' },
    });
    await insertEvents(db.pool, [skewed]);
    const { rows } = await db.pool.query<{ occurred: string; drift: number }>(
      `select payload ->> 'occurredAt' as occurred,
              abs(extract(epoch from (payload ->> 'occurredAt')::timestamptz - now())) as drift
         from event_outbox where event_id = $1::uuid`,
      [skewed.id],
    );
    expect(rows[0]!.occurred).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(Number(rows[0]!.drift)).toBeLessThan(60);
  });

  it('claims through the index of pending rows, even with statistics taken during a backlog', async () => {
    // What a drain leaves: a backlog's rows, analysed while pending, then published (autovacuum held
    // off, so the statistics stay those of the backlog).
    await db.pool.query('alter table event_outbox set (autovacuum_enabled = false)');
    try {
      await db.pool.query(
        `insert into event_outbox (event_id, type, payload)
         select gen_random_uuid(), 'order.placed', '{}'::jsonb from generate_series(1, 20000)`,
      );
      await db.pool.query('analyze event_outbox');
      await db.pool.query(`update event_outbox set status = 'PUBLISHED', published_at = now()`);
      const [pending] = (
        await db.pool.query<{ id: string }>(
          `insert into event_outbox (event_id, type, payload) values (gen_random_uuid(), 'order.placed', '{}')
           returning id`,
        )
      ).rows;

      const { rows } = await db.pool.query(`explain (analyze, format json) ${CLAIM_DUE_EVENTS}`, [100]);
      const plan = JSON.stringify(rows[0]['QUERY PLAN']);
      expect(plan).toContain('"Index Name":"event_outbox_pending_id_idx"');
      // Not a walk over the published rows: none of them is read and dropped by the filter.
      const removed = [...plan.matchAll(/"Rows Removed by Filter":(\d+)/g)].map((m) => Number(m[1]));
      expect(Math.max(0, ...removed)).toBe(0);
      expect(pending).toBeDefined();
    } finally {
      await db.pool.query(`delete from event_outbox where type = 'order.placed' and payload = '{}'::jsonb`);
      await db.pool.query('alter table event_outbox reset (autovacuum_enabled)');
    }
  });

  it('wakes on NOTIFY long before the poll interval', async () => {
    config = testConfig(id, { DATABASE_URL: db.url, OUTBOX_POLL_INTERVAL_MS: '60000' });
    const seen = await observer.observe(config.AMQP_EXCHANGE, '#');
    const { publisher, lines } = newPublisher();
    publisher.start();
    await waitFor(() => lines.some((l) => l.msg === 'listening for outbox notifications'), {
      what: 'LISTEN',
    });
    // Let the start-up catch-up batch finish, so only NOTIFY can wake it from here.
    await new Promise((resolve) => setTimeout(resolve, 300));

    const started = Date.now();
    const event = placedEvent();
    await insertEvents(db.pool, [event]);
    await waitFor(() => seen.some((m) => m.properties.messageId === event.id), {
      timeoutMs: 5000,
      intervalMs: 10,
      what: 'the event to be published',
    });
    const latency = Date.now() - started;
    expect(latency).toBeLessThan(2000);
    await waitFor(async () => (await outboxCounts()).published === 1, { what: 'row PUBLISHED' });
  });

  it('re-LISTENs after its LISTEN connection is killed', async () => {
    config = testConfig(id, { DATABASE_URL: db.url, OUTBOX_POLL_INTERVAL_MS: '60000' });
    const seen = await observer.observe(config.AMQP_EXCHANGE, '#');
    const { publisher, lines } = newPublisher();
    publisher.start();
    const listening = () => lines.filter((l) => l.msg === 'listening for outbox notifications').length;
    await waitFor(() => listening() === 1, { what: 'LISTEN' });

    const { rows } = await db.pool.query<{ killed: boolean }>(
      `select pg_terminate_backend(pid) as killed from pg_stat_activity
       where datname = current_database() and application_name = 'acme-outbox-listen'`,
    );
    expect(rows.map((r) => r.killed)).toEqual([true]);
    await waitFor(() => listening() === 2, { what: 'LISTEN again' });
    await new Promise((resolve) => setTimeout(resolve, 300));

    const event = placedEvent();
    await insertEvents(db.pool, [event]);
    await waitFor(() => seen.some((m) => m.properties.messageId === event.id), {
      timeoutMs: 3000,
      what: 'the event to be published after re-LISTEN',
    });
  });

  it('survives its PostgreSQL connections being killed mid-run', async () => {
    config = testConfig(id, { DATABASE_URL: db.url, OUTBOX_POLL_INTERVAL_MS: '100' });
    const seen = await observer.observe(config.AMQP_EXCHANGE, '#');
    const pool = createPool(db.url, 4, 'acme-outbox-test');
    cleanups.push(() => pool.end());
    const { publisher } = newPublisher({ pool });
    publisher.start();

    const events = Array.from({ length: 60 }, () => placedEvent());
    for (let i = 0; i < events.length; i += 10) {
      await insertEvents(db.pool, events.slice(i, i + 10));
      if (i === 30) {
        await db.pool.query(
          `select pg_terminate_backend(pid) from pg_stat_activity
           where datname = current_database()
             and application_name in ('acme-outbox-test', 'acme-outbox-listen')`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    await waitFor(async () => (await outboxCounts()).published === events.length, {
      timeoutMs: 30_000,
      what: 'every row PUBLISHED',
    });
    const ids = new Set(seen.map((m) => m.properties.messageId as string));
    for (const event of events) expect(ids.has(event.id)).toBe(true);
  });

  it('lets two instances share 200 rows: every row published and marked, none lost', async () => {
    config = testConfig(id, {
      DATABASE_URL: db.url,
      OUTBOX_BATCH_SIZE: '20',
      OUTBOX_POLL_INTERVAL_MS: '200',
    });
    const seen = await observer.observe(config.AMQP_EXCHANGE, '#');
    const a = newPublisher({ name: `test-outbox-${id}-a` });
    const b = newPublisher({ name: `test-outbox-${id}-b` });
    const events = Array.from({ length: 200 }, () => placedEvent());
    a.publisher.start();
    b.publisher.start();
    // Several transactions, so both instances get woken while rows keep arriving.
    for (let i = 0; i < events.length; i += 25) await insertEvents(db.pool, events.slice(i, i + 25));

    await waitFor(async () => (await outboxCounts()).published === 200, {
      timeoutMs: 30_000,
      what: '200 rows PUBLISHED',
    });
    await waitFor(() => seen.length >= 200, { what: '200 messages' });
    const ids = seen.map((m) => m.properties.messageId as string);
    expect(new Set(ids).size).toBe(200);
    // No faults here, so at-least-once should have been exactly once.
    expect(ids).toHaveLength(200);
    const { rows } = await db.pool.query<{ max: number }>(
      'select max(attempts)::int as max from event_outbox',
    );
    expect(rows[0]!.max).toBe(0);
    const claimedBy = (lines: Array<Record<string, unknown>>) =>
      lines
        .filter((l) => l.msg === 'outbox batch done')
        .reduce((sum, l) => sum + Number(l.published ?? 0), 0);
    expect(claimedBy(a.lines) + claimedBy(b.lines)).toBe(200);
    console.info(`instance a published ${claimedBy(a.lines)}, b published ${claimedBy(b.lines)}`);
  });

  it('recovers when RabbitMQ drops its connection mid-run, losing nothing', async () => {
    config = testConfig(id, {
      DATABASE_URL: db.url,
      OUTBOX_BATCH_SIZE: '10',
      OUTBOX_POLL_INTERVAL_MS: '100',
      OUTBOX_PUBLISH_TIMEOUT_MS: '2000',
    });
    const seen = await observer.observe(config.AMQP_EXCHANGE, '#');
    const name = `test-outbox-${id}`;
    const { publisher, lines } = newPublisher({ name });
    publisher.start();

    const events = Array.from({ length: 100 }, () => placedEvent());
    let killed = 0;
    for (let i = 0; i < events.length; i += 5) {
      await insertEvents(db.pool, events.slice(i, i + 5));
      if (i === 40) killed = await closeConnectionsNamed(name);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(killed).toBe(1);

    await waitFor(async () => (await outboxCounts()).published === events.length, {
      timeoutMs: 60_000,
      what: 'every row PUBLISHED after the reconnect',
    });
    const ids = new Set(seen.map((m) => m.properties.messageId as string));
    for (const event of events) expect(ids.has(event.id), `event ${event.id} delivered`).toBe(true);
    expect(lines.some((l) => l.msg === 'disconnected from RabbitMQ; reconnecting')).toBe(true);
    console.info(
      `${seen.length} messages for ${events.length} events (duplicates are at-least-once redeliveries)`,
    );
  });

  it('gives up on a publish that is never confirmed, within the timeout, and backs the row off', async () => {
    config = testConfig(id, {
      DATABASE_URL: db.url,
      AMQP_URL: 'amqp://guest:guest@127.0.0.1:1',
      OUTBOX_PUBLISH_TIMEOUT_MS: '300',
    });
    const { publisher } = newPublisher();
    const event = placedEvent();
    await insertEvents(db.pool, [event]);

    const started = Date.now();
    const result = await publisher.publishBatch();
    const elapsed = Date.now() - started;

    expect(result).toEqual({ claimed: 1, published: 0, failed: 1 });
    expect(elapsed).toBeLessThan(2000);
    const { rows } = await db.pool.query(
      `select status, attempts, last_error, available_at > now() as deferred from event_outbox`,
    );
    expect(rows[0]).toMatchObject({ status: 'PENDING', attempts: 1, deferred: true });
    expect(rows[0].last_error).toMatch(/no publisher confirm .* within 300 ms/);
    // Deferred, so an immediate retry does not pick it up again (no hot loop).
    expect(await publisher.publishBatch()).toEqual({ claimed: 0, published: 0, failed: 0 });
  });
});
