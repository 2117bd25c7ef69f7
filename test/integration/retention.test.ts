/**
 * Retention (issue 11 item 7): pruning published outbox rows, processed-event records and
 * idempotency keys leaves every order's timeline whole and lets no duplicate through, whether it
 * arrives inside the dedupe window (refused by its record) or after its record was pruned (refused by
 * the consumer's keyed effect), and a re-written event id is never published again.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../../lib/config.js';
import type { EventEnvelope } from '../../lib/events.js';
import { enqueueEvent } from '../../db/outbox.js';
import { parseOrderEvent, applyOrderEvent } from '../../subscribers/analytics/consumer.js';
import { awardPoints, parseLoyaltyEvent, revokePoints } from '../../subscribers/loyalty/consumer.js';
import { runRetention } from '../../workers/retention.js';
import { orderWorkflowId } from '../../workflows/contract.js';
import { createProduct } from '../helpers/db.js';
import { startSystem, type OrderView, type TestSystem } from '../helpers/system.js';

let system: TestSystem;
beforeAll(async () => {
  system = await startSystem();
});
afterAll(async () => {
  await system?.stop();
});

const DAY = 24 * 3600_000;
const defaults = loadConfig({});

type Timeline = Array<{
  eventId: string;
  type: string;
  occurredAt: string;
  published: boolean;
  publishedAt: string;
}>;
const timelineOf = async (id: string) => (await system.getOrder(id)).events as unknown as Timeline;

async function outboxEvents(orderId: string): Promise<EventEnvelope[]> {
  const { rows } = await system.db.pool.query<{ payload: EventEnvelope }>(
    'select payload from event_outbox where order_id = $1::uuid order by id',
    [orderId],
  );
  return rows.map((r) => r.payload);
}

const asMessage = (event: EventEnvelope) => Buffer.from(JSON.stringify(event));

async function snapshot() {
  const q = async (sql: string) => (await system.db.pool.query(sql)).rows;
  return {
    points: await q(
      'select order_id, customer_id, points, event_id, reference, revoked_at from loyalty_points order by order_id',
    ),
    analyticsOrders: await q('select * from analytics_orders order by order_id'),
    analyticsPayments: await q('select * from analytics_payments order by event_id'),
  };
}

describe('retention', () => {
  test('pruning keeps every timeline whole and lets no duplicate through', { timeout: 90_000 }, async () => {
    const sku = await createProduct(system.db.pool, { stock: 5, price: '25.00' });
    const placed = await Promise.all([
      system.placeOrder(
        { customer_id: 'C-RET-1', email: 'r1@example.com', items: [{ sku, qty: 1 }] },
        { 'idempotency-key': `ret-${sku}-1` },
      ),
      system.placeOrder({ customer_id: 'C-RET-2', email: 'r2@example.com', items: [{ sku, qty: 99 }] }),
      system.placeOrder({ customer_id: 'DECLINE-RET', email: 'r3@example.com', items: [{ sku, qty: 1 }] }),
    ]);
    const ids = placed.map((p) => p.body.id);
    const finals = await Promise.all(ids.map((id) => system.waitForFinal(id)));
    expect(finals.map((o) => o.status)).toEqual(['COMPLETED', 'OUT_OF_STOCK', 'PAYMENT_FAILED']);
    // Every run ended (a failed payment's compensation and e-mail come after its final status) and
    // every event published before we age them (the publisher marks them in the background).
    await Promise.all(
      ids.map((id) =>
        system.temporal.workflow
          .getHandle(orderWorkflowId(id))
          .result()
          .catch(() => {}),
      ),
    );
    await waitForPublished(ids);

    // An order still under way whose order.placed went out long ago: its row must stay for reconcile.
    const openOrder = await insertOpenOrderWithOldPublishedEvent();

    // The subscribers apply every event, as they would from their queues.
    const events = (await Promise.all(ids.map(outboxEvents))).flat();
    for (const event of events) await applyOrderEvent(system.db.pool, parseOrderEvent(asMessage(event)));
    const completed = events.find((e) => e.type === 'payment.completed')!;
    expect(await awardPoints(system.db.pool, parseLoyaltyEvent(asMessage(completed)) as never)).toBe(
      'awarded',
    );

    // Inside the window a duplicate is refused by its dedupe record.
    expect(await awardPoints(system.db.pool, parseLoyaltyEvent(asMessage(completed)) as never)).toBe(
      'duplicate-event',
    );

    // Time passes: everything so far is older than every retention setting.
    await system.db.pool.query(
      `update event_outbox set published_at = published_at - interval '40 days', created_at = created_at - interval '40 days'`,
    );
    await system.db.pool.query(
      `update processed_events set processed_at = processed_at - interval '400 days'`,
    );
    await system.db.pool.query(`update idempotency_keys set created_at = created_at - interval '40 days'`);
    // A refund applied just now: its record is inside the window and must survive the pruning.
    const refund = {
      ...completed,
      id: '00000000-0000-4000-8000-000000000001',
      type: 'payment.refunded',
      data: { amount: '25.00', currency: 'USD', reference: 'another-capture', reason: 'test' },
    } as EventEnvelope;
    expect(await revokePoints(system.db.pool, parseLoyaltyEvent(asMessage(refund)) as never)).toBe(
      'nothing-to-revoke',
    );

    const timelines = await Promise.all(ids.map(timelineOf));
    const openTimeline = await timelineOf(openOrder);
    const before = await snapshot();
    expect(timelines.every((t) => t.length >= 2 && t.every((e) => e.published))).toBe(true);

    const pruned = await runRetention(system.db.pool, defaults);
    expect(pruned.outboxRows).toBe(events.length);
    expect(pruned.processedEvents).toBeGreaterThanOrEqual(events.length + 1);
    expect(pruned.idempotencyKeys).toBe(1);

    // Every timeline exactly as it was: ids, types, times, published and when.
    expect(await Promise.all(ids.map(timelineOf))).toEqual(timelines);
    expect(await timelineOf(openOrder)).toEqual(openTimeline);
    const { rows: left } = await system.db.pool.query<{ order_id: string }>(
      'select order_id::text from event_outbox',
    );
    expect(left.map((r) => r.order_id)).toEqual([openOrder]); // the open order's row is kept
    const { rows: keys } = await system.db.pool.query('select 1 from idempotency_keys');
    expect(keys).toEqual([]);

    // A duplicate inside the window: its record is still there.
    expect(await revokePoints(system.db.pool, parseLoyaltyEvent(asMessage(refund)) as never)).toBe(
      'duplicate-event',
    );
    // Duplicates of pruned records (a re-drive, a reconcile re-send): the keyed effects refuse them.
    expect(await awardPoints(system.db.pool, parseLoyaltyEvent(asMessage(completed)) as never)).toBe(
      'order-already-awarded',
    );
    for (const event of events) await applyOrderEvent(system.db.pool, parseOrderEvent(asMessage(event)));
    expect(await snapshot()).toEqual(before);

    // A retried step writing one of those events again writes nothing: the timeline remembers the id.
    expect(await enqueueEvent(system.db.pool, completed)).toBe(false);
    const { rows: rewritten } = await system.db.pool.query('select 1 from event_outbox where event_id = $1', [
      completed.id,
    ]);
    expect(rewritten).toEqual([]);

    // A second pass finds nothing more; a fresh order still goes through with its whole timeline.
    expect(await runRetention(system.db.pool, defaults)).toEqual({
      outboxRows: 0,
      processedEvents: 0,
      idempotencyKeys: 0,
    });
    const again = await system.placeOrder(
      { customer_id: 'C-RET-1', email: 'r1@example.com', items: [{ sku, qty: 1 }] },
      { 'idempotency-key': `ret-${sku}-1` },
    );
    expect(again.status).toBe(202); // the expired key is a new order, as documented
    expect(again.body.id).not.toBe(ids[0]);
    const done = await system.waitForFinal(again.body.id);
    expect(done.events.map((e) => e.type)).toEqual([
      'order.placed',
      'inventory.reserved',
      'payment.completed',
      'order.completed',
    ]);
  });

  test('the retention settings are refused below their duplicate windows at start-up', () => {
    expect(() => loadConfig({ PROCESSED_EVENTS_RETENTION_MS: String(DAY) })).toThrow(
      /PROCESSED_EVENTS_RETENTION_MS/,
    );
  });
});

async function waitForPublished(ids: string[]): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const { rows } = await system.db.pool.query<{ n: number }>(
      `select count(*)::int as n from event_outbox where order_id = any($1::uuid[]) and status <> 'PUBLISHED'`,
      [ids],
    );
    if (rows[0]!.n === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('events were not published within 10 s');
}

/** A PENDING order whose order.placed was published 40 days ago (its run never started). */
async function insertOpenOrderWithOldPublishedEvent(): Promise<string> {
  const { rows } = await system.db.pool.query<{ id: string }>(
    `with o as (
       insert into orders (id, customer_id, email, total, currency, correlation_id)
       values (gen_random_uuid(), 'C-RET-OPEN', 'open@example.com', 10, 'USD', 'corr-open')
       returning id)
     insert into event_outbox (event_id, type, order_id, payload, status, published_at)
     select gen_random_uuid(), 'order.placed', o.id,
            jsonb_build_object('occurredAt', now() - interval '40 days'), 'PUBLISHED', now() - interval '40 days'
       from o
     returning order_id::text as id`,
  );
  return rows[0]!.id;
}

export type { OrderView };
