/**
 * The loyalty subscriber on the real PostgreSQL and RabbitMQ: a duplicate event awards nothing more,
 * a malformed one is dead-lettered, and the whole path from the outbox works with no core change.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connectAmqp } from '../../lib/amqp/connection.js';
import { DEAD_LETTER_HEADERS } from '../../lib/amqp/consumer.js';
import { dlqName } from '../../lib/amqp/topology.js';
import { eventPublishOptions } from '../../lib/amqp/publisher.js';
import type { Config } from '../../lib/config.js';
import { buildEvent, type EventEnvelope } from '../../lib/events.js';
import { awardOrderPoints, revokeOrderPoints } from '../../db/loyalty-points.js';
import { enqueueEvent } from '../../db/outbox.js';
import { withTransaction } from '../../db/pool.js';
import { createLoyaltySubscriber, pointsFor } from '../../subscribers/loyalty/consumer.js';
import { OutboxPublisher } from '../../workers/outbox-publisher.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import {
  captureLogger,
  openObserver,
  shortId,
  TEST_PUBLISHER,
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
beforeEach(() => {
  id = shortId();
  config = testConfig(id, { DATABASE_URL: db.url });
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  // A publisher declares every consumer group's queue, analytics' included.
  await observer.cleanup(config.AMQP_EXCHANGE, [
    config.LOYALTY_QUEUE,
    config.BRIDGE_QUEUE,
    config.ANALYTICS_QUEUE,
  ]);
});

async function startSubscriber() {
  const { logger, lines } = captureLogger();
  const amqp = connectAmqp(config, { name: `test-loyalty-${id}`, logger });
  const subscriber = createLoyaltySubscriber({
    amqp,
    pool: db.pool,
    config,
    logger,
    retryDelayMs: () => 100,
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
  return { lines, stop, logger, amqp };
}

function paymentCompleted(amount = '42.99'): EventEnvelope<'payment.completed'> {
  return buildEvent('payment.completed', {
    id: randomUUID(),
    orderId: randomUUID(),
    correlationId: `corr-${shortId()}`,
    data: { amount, currency: 'USD', reference: `ref-${shortId()}`, customerId: `C-${id}` },
  });
}

function paymentRefunded(completed: EventEnvelope<'payment.completed'>): EventEnvelope<'payment.refunded'> {
  return buildEvent('payment.refunded', {
    id: randomUUID(),
    orderId: completed.orderId,
    correlationId: completed.correlationId,
    data: {
      amount: completed.data.amount,
      currency: 'USD',
      reference: completed.data.reference,
      reason: 'cancel',
    },
  });
}

function publish(event: EventEnvelope | Buffer, messageId: string, type = 'payment.completed'): void {
  const content = Buffer.isBuffer(event) ? event : Buffer.from(JSON.stringify(event));
  observer.channel.publish(
    config.AMQP_EXCHANGE,
    type,
    content,
    eventPublishOptions({ id: messageId, type }, undefined, TEST_PUBLISHER),
  );
}

async function pointsOf(orderId: string): Promise<number | undefined> {
  const { rows } = await db.pool.query<{ points: number }>(
    'select points from loyalty_points where order_id = $1',
    [orderId],
  );
  return rows[0]?.points;
}

describe('loyalty subscriber', () => {
  it('computes one point per whole currency unit', () => {
    expect(pointsFor('42.99')).toBe(42);
    expect(pointsFor('0.50')).toBe(0);
    expect(pointsFor('10000')).toBe(10000);
  });

  it('awards points once when payment.completed arrives twice with the same event id', async () => {
    const running = await startSubscriber();
    const event = paymentCompleted('42.99');
    publish(event, event.id);
    publish(event, event.id);

    const handled = () => running.lines.filter((l) => String(l.msg).startsWith('loyalty points'));
    await waitFor(() => handled().length === 2, { what: 'both deliveries handled' });
    expect(handled().map((l) => l.outcome)).toEqual(['awarded', 'duplicate-event']);
    expect(handled()[0]).toMatchObject({ orderId: event.orderId, correlationId: event.correlationId });

    const points = await db.pool.query('select order_id, customer_id, points, event_id from loyalty_points');
    expect(points.rows).toEqual([
      { order_id: event.orderId, customer_id: `C-${id}`, points: 42, event_id: event.id },
    ]);
    const processed = await db.pool.query(
      `select count(*)::int as n from processed_events where consumer = 'loyalty' and event_id = $1`,
      [event.id],
    );
    expect(processed.rows[0].n).toBe(1);

    await running.stop();
    expect(await observer.messageCount(config.LOYALTY_QUEUE)).toBe(0);
  });

  it('dead-letters a malformed payment.completed with the reason', async () => {
    const running = await startSubscriber();
    const event = paymentCompleted();
    publish(Buffer.from(JSON.stringify({ ...event, data: { ...event.data, amount: 42.5 } })), event.id);

    await waitFor(async () => (await observer.messageCount(dlqName(config.LOYALTY_QUEUE))) === 1, {
      what: 'the message in the DLQ',
    });
    await running.stop();
    const [dead] = await observer.drain(dlqName(config.LOYALTY_QUEUE));
    expect(dead!.properties.headers![DEAD_LETTER_HEADERS.reason]).toMatch(/data\.amount/);
    const points = await db.pool.query('select 1 from loyalty_points where order_id = $1', [event.orderId]);
    expect(points.rowCount).toBe(0);
  });

  it('dead-letters at its first delivery a trusted event whose text PostgreSQL cannot store, not after every retry', async () => {
    const running = await startSubscriber();
    const event = paymentCompleted();
    // Valid by the schema; refused by PostgreSQL (a NUL byte in text) on every attempt.
    publish(
      Buffer.from(JSON.stringify({ ...event, data: { ...event.data, customerId: 'C\u0000' } })),
      event.id,
    );

    await waitFor(async () => (await observer.messageCount(dlqName(config.LOYALTY_QUEUE))) === 1, {
      what: 'the message in the DLQ',
    });
    await running.stop();
    const [dead] = await observer.drain(dlqName(config.LOYALTY_QUEUE));
    expect(dead!.properties.headers![DEAD_LETTER_HEADERS.attempts]).toBe(1);
    expect(dead!.properties.headers![DEAD_LETTER_HEADERS.reason]).toMatch(/invalid byte sequence/);
    expect(await pointsOf(event.orderId)).toBeUndefined();
  });

  it('receives events from the outbox publisher end to end', async () => {
    const running = await startSubscriber();
    const event = paymentCompleted('120.00');
    await enqueueEvent(db.pool, event);
    const { logger } = captureLogger();
    const publisher = new OutboxPublisher({ pool: db.pool, amqp: running.amqp, config, logger });
    cleanups.push(() => publisher.stop());
    await publisher.publishBatch();

    const row = await waitFor(
      async () =>
        (await db.pool.query('select points from loyalty_points where order_id = $1', [event.orderId]))
          .rows[0],
      { what: 'points for the order' },
    );
    expect(row.points).toBe(120);
  });

  it("gives a retried order's capture the points when an earlier run's refund arrives after it", async () => {
    const running = await startSubscriber();
    // Run 1 captured A (refunded by its compensation), run 2 captured B; A's refund arrives last.
    const a = paymentCompleted('20.00');
    publish(a, a.id);
    await waitFor(async () => (await pointsOf(a.orderId)) === 20, { what: 'run 1’s award' });
    const b = { ...paymentCompleted('30.00'), orderId: a.orderId };
    publish(b, b.id);
    await waitFor(() => running.lines.some((l) => l.eventId === b.id), { what: 'run 2’s capture handled' });
    expect(await pointsOf(a.orderId)).toBe(20); // A's award still stands: B waits for it
    expect(running.lines.find((l) => l.eventId === b.id)?.outcome).toBe('waiting');
    const refundA = paymentRefunded(a);
    publish(refundA, refundA.id, 'payment.refunded');
    await waitFor(async () => (await pointsOf(a.orderId)) === 30, {
      what: 'run 2’s capture earning the points',
    });

    // B's own refund then takes them back; a late duplicate of A's refund changes nothing.
    const refundB = paymentRefunded(b);
    publish(refundB, refundB.id, 'payment.refunded');
    await waitFor(async () => (await pointsOf(a.orderId)) === 0, { what: 'run 2’s points taken back' });
    await running.stop();
    expect(await observer.messageCount(dlqName(config.LOYALTY_QUEUE))).toBe(0);
  });

  it('a capture whose refund committed while its award was being written never takes a later award', async () => {
    // Two consumers (or prefetch > 1): capture A's refund is in a transaction not yet committed when
    // A's award starts. The award's snapshot does not see the refund, so A is put on the waiting list
    // though it is refunded; then the order's retried run captures B, and B is refunded.
    const [orderId, a, b] = [randomUUID(), `ref-${shortId()}`, `ref-${shortId()}`];
    const award = (reference: string) =>
      awardOrderPoints(db.pool, 'loyalty', {
        orderId,
        customerId: 'C-1',
        points: 20,
        eventId: randomUUID(),
        reference,
      });
    const refunding = await db.pool.connect();
    try {
      await refunding.query('begin');
      await revokeOrderPoints(refunding, { orderId, eventId: randomUUID(), reference: a });
      const late = award(a); // waits on the refund's tombstone row
      await waitFor(
        async () =>
          (
            await db.pool.query<{ n: number }>(
              "select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()",
            )
          ).rows[0]!.n > 0 || undefined,
        { what: 'the award to wait on the refund' },
      );
      await refunding.query('commit');
      expect(await late).toMatchObject({ awarded: false });
    } finally {
      refunding.release();
    }
    expect(await award(b)).toMatchObject({ awarded: true }); // the tombstone is replaced by B's award
    expect(await pointsOf(orderId)).toBe(20);
    await withTransaction(db.pool, (tx) =>
      revokeOrderPoints(tx, { orderId, eventId: randomUUID(), reference: b }),
    );
    // B's refund frees the award: A, refunded, must not take it, and is no longer waiting.
    expect(await pointsOf(orderId)).toBe(0);
    const waiting = await db.pool.query(
      'select reference from loyalty_waiting_captures where order_id = $1',
      [orderId],
    );
    expect(waiting.rows).toEqual([]);
  });

  it('takes the points back when the payment is refunded, whichever event arrives first', async () => {
    const running = await startSubscriber();
    const first = paymentCompleted('42.99');
    publish(first, first.id);
    await waitFor(async () => (await pointsOf(first.orderId)) === 42, { what: 'the award' });
    const refund = paymentRefunded(first);
    publish(refund, refund.id, 'payment.refunded');
    publish(refund, refund.id, 'payment.refunded'); // a duplicate
    await waitFor(async () => (await pointsOf(first.orderId)) === 0, { what: 'the points taken back' });

    // The refund overtakes its payment.completed: the late award is not made.
    const late = paymentCompleted('15.00');
    const earlyRefund = paymentRefunded(late);
    publish(earlyRefund, earlyRefund.id, 'payment.refunded');
    await waitFor(async () => (await pointsOf(late.orderId)) === 0, { what: 'the tombstone' });
    publish(late, late.id);
    await waitFor(() => running.lines.some((l) => l.eventId === late.id), { what: 'the late award handled' });
    expect(await pointsOf(late.orderId)).toBe(0);
    expect(running.lines.find((l) => l.eventId === late.id)?.outcome).toBe('capture-refunded');

    // A retried order's new capture (another reference) earns points again.
    const retried = { ...paymentCompleted('42.99'), orderId: first.orderId };
    publish(retried, retried.id);
    await waitFor(async () => (await pointsOf(first.orderId)) === 42, { what: 'the new run’s award' });

    // Run 1's refund overtook its capture; run 2 captured and refunded; then run 1's payment.completed
    // arrives at last. Its capture was refunded: it earns nothing, though the order's own tombstone
    // is run 2's now.
    const run1 = paymentCompleted('20.00');
    const run1Refund = paymentRefunded(run1);
    publish(run1Refund, run1Refund.id, 'payment.refunded');
    await waitFor(async () => (await pointsOf(run1.orderId)) === 0, { what: 'run 1’s tombstone' });
    const run2 = { ...paymentCompleted('30.00'), orderId: run1.orderId };
    publish(run2, run2.id);
    await waitFor(async () => (await pointsOf(run1.orderId)) === 30, { what: 'run 2’s award' });
    const run2Refund = paymentRefunded(run2);
    publish(run2Refund, run2Refund.id, 'payment.refunded');
    await waitFor(async () => (await pointsOf(run1.orderId)) === 0, { what: 'run 2’s points taken back' });
    publish(run1, run1.id);
    await waitFor(() => running.lines.some((l) => l.eventId === run1.id), {
      what: 'run 1’s late award handled',
    });
    expect(await pointsOf(run1.orderId)).toBe(0);
    await running.stop();
    expect(await observer.messageCount(dlqName(config.LOYALTY_QUEUE))).toBe(0);
  });
});
