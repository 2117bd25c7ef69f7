/**
 * `orders erase-customer` (issue 11 item 7): one customer's e-mail addresses and words gone from the
 * orders, their e-mails, outbox, analytics and dead-letter queues; their amounts, lines, statuses and
 * timelines kept; every other customer untouched.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import amqplib, { type ChannelModel, type GetMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runCli } from '../../cli/program.js';
import { createCliContext } from '../../cli/context.js';
import { DEAD_LETTER_HEADERS } from '../../lib/amqp/consumer.js';
import { assertConsumerQueue, bridgeQueueSpec, dlqName, loyaltyQueueSpec } from '../../lib/amqp/topology.js';
import type { Config } from '../../lib/config.js';
import { buildEvent, type EventEnvelope } from '../../lib/events.js';
import { createLogger } from '../../lib/logger.js';
import { connectTemporal, startOrderSaga, startSettlement } from '../../lib/temporal.js';
import { orderWorkflowId } from '../../workflows/contract.js';
import { getOrder } from '../../db/order-views.js';
import { placeOrder } from '../../db/order-placement.js';
import { retryOrder } from '../../db/order-retries.js';
import { cancelOrderWithoutSaga, recordCancelReason, transitionOrder } from '../../db/orders.js';
import { recordNotification } from '../../db/notifications.js';
import { applyOrderEvent, parseOrderEvent } from '../../subscribers/analytics/consumer.js';
import { redriveDeadLetters } from '../../ops/dlq.js';
import { eraseCustomer } from '../../ops/erase-customer.js';
import { deleteTopology, shortId, TEST_PUBLISHER, testConfig, waitFor } from '../helpers/amqp.js';
import { createProduct, createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
let config: Config;
let connection: ChannelModel;
let client: Client;
const logger = createLogger('erase-test', 'silent');

beforeAll(async () => {
  db = await createTestDatabase();
  // The test's login reads loyalty's queue, and is the trusted publisher and the operator.
  config = testConfig(shortId(), { DATABASE_URL: db.url, LOYALTY_AMQP_USER: TEST_PUBLISHER });
  connection = await amqplib.connect(config.AMQP_URL);
  client = await connectTemporal(config);
  const channel = await connection.createConfirmChannel();
  await assertConsumerQueue(channel, bridgeQueueSpec(config));
  await assertConsumerQueue(channel, loyaltyQueueSpec(config));
  await channel.close();
});
afterAll(async () => {
  await deleteTopology(connection, config.AMQP_EXCHANGE, [config.BRIDGE_QUEUE, config.LOYALTY_QUEUE]);
  await connection?.close();
  await client?.connection.close();
  await db?.drop();
});

async function place(customerId: string, email: string, sku: string): Promise<string> {
  const outcome = await placeOrder(db.pool, {
    customerId,
    email,
    items: [{ sku, qty: 2 }],
    idempotencyKey: undefined,
    keyRetentionHours: 24,
    maxTotal: 10_000_000,
    requestHash: randomUUID(),
    correlationId: `corr-${shortId()}`,
  });
  if (outcome.kind !== 'created') throw new Error(outcome.kind);
  return outcome.orderId;
}

async function deadLetter(body: Buffer | string, messageId: string, reason: string): Promise<void> {
  const channel = await connection.createConfirmChannel();
  channel.publish('', dlqName(config.BRIDGE_QUEUE), Buffer.from(body), {
    messageId,
    persistent: true,
    headers: { [DEAD_LETTER_HEADERS.reason]: reason, [DEAD_LETTER_HEADERS.queue]: config.BRIDGE_QUEUE },
  });
  await channel.waitForConfirms();
  await channel.close();
}

/** A dead letter as loyalty makes one: its own copy, recording who sent the event first. */
async function loyaltyDeadLetter(event: EventEnvelope, sentBy: string): Promise<void> {
  const channel = await connection.createConfirmChannel();
  channel.publish('', dlqName(config.LOYALTY_QUEUE), Buffer.from(JSON.stringify(event)), {
    messageId: event.id,
    type: event.type,
    userId: TEST_PUBLISHER,
    persistent: true,
    headers: {
      [DEAD_LETTER_HEADERS.reason]: 'database was down too long',
      [DEAD_LETTER_HEADERS.queue]: config.LOYALTY_QUEUE,
      [DEAD_LETTER_HEADERS.userId]: sentBy,
    },
  });
  await channel.waitForConfirms();
  await channel.close();
}

async function drainDlq(queue = config.BRIDGE_QUEUE): Promise<GetMessage[]> {
  const channel = await connection.createChannel();
  const all: GetMessage[] = [];
  for (;;) {
    const msg = await channel.get(dlqName(queue), { noAck: false });
    if (!msg) break;
    all.push(msg);
  }
  for (const msg of all) channel.nack(msg, false, true);
  await channel.close();
  return all;
}

/** Ready messages in a DLQ. */
async function dlqDepth(queue = config.BRIDGE_QUEUE): Promise<number> {
  const channel = await connection.createChannel();
  try {
    return (await channel.checkQueue(dlqName(queue))).messageCount;
  } finally {
    await channel.close();
  }
}

const runningQuery = (orderId: string) =>
  `WorkflowId = "${orderWorkflowId(orderId)}" AND ExecutionStatus = "Running"`;

/**
 * While a workflow of the customer's order (its `what`: saga or settlement) runs, as Temporal's
 * visibility lists it, the erasure is refused naming the order and the address stays; then the
 * workflow is terminated.
 */
async function expectRefusedWhileRunning(customer: string, orderId: string, email: string, what: string) {
  try {
    await waitFor(async () => (await client.workflow.count(runningQuery(orderId))).count === 1, {
      what: `the running ${what} in visibility`,
    });
    const refused = await eraseCustomer({ pool: db.pool, connection, client, config, logger }, customer);
    expect(refused.items).toMatchObject([
      { ok: false, outcome: 'refused', reason: expect.stringContaining(orderId) },
    ]);
    expect((await getOrder(db.pool, orderId))!.email).toBe(email);
  } finally {
    await client.workflow.getHandle(orderWorkflowId(orderId)).terminate(`test: the ${what} ended`);
  }
}

const outboxPayloads = async (orderId: string) =>
  (
    await db.pool.query<{ type: string; payload: EventEnvelope }>(
      'select type, payload from event_outbox where order_id = $1::uuid order by id',
      [orderId],
    )
  ).rows;

describe('erase-customer', () => {
  test('erases one customer everywhere, keeps amounts and timelines, leaves others alone', async () => {
    const sku = await createProduct(db.pool, { stock: 100, price: '12.50' });
    const customer = `C-ERASE-${shortId()}`;
    const other = `C-KEEP-${shortId()}`;
    const mine = [
      await place(customer, 'alice@example.com', sku),
      await place(customer, 'alice.old@example.com', sku),
    ];
    const theirs = await place(other, 'bob@example.com', sku);

    // Order 0 completed with its e-mail; order 1 cancelled with the customer's words everywhere.
    await db.pool.query(`update orders set status = 'COMPLETED' where id = $1::uuid`, [mine[0]]);
    await recordNotification(db.pool, {
      orderId: mine[0]!,
      run: 1,
      kind: 'order-completed',
      recipient: 'alice@example.com',
      subject: `Your order ${mine[0]} is confirmed`,
      body: 'Thank you!',
    });
    expect((await cancelOrderWithoutSaga(db.pool, mine[1]!, 'changed my mind')).kind).toBe('cancelled');
    await recordCancelReason(db.pool, mine[1]!, {
      code: 'changed_mind',
      note: 'call me on +44 7700 900123',
      confirmed: true,
    });
    await recordNotification(db.pool, {
      orderId: mine[1]!,
      run: 1,
      kind: 'order-cancelled',
      recipient: 'alice.old@example.com',
      subject: `Your order ${mine[1]} was cancelled`,
      body: 'Reason: call me on +44 7700 900123.',
    });
    await transitionOrder(db.pool, theirs, 'CANCELLED', { reason: 'bob changed his mind' });
    for (const id of [...mine, theirs])
      for (const { payload } of await outboxPayloads(id))
        await applyOrderEvent(db.pool, parseOrderEvent(Buffer.from(JSON.stringify(payload))));

    // The DLQ holds: Alice's order.placed, a malformed body with her address, Bob's order.placed.
    const [alicePlaced] = await outboxPayloads(mine[0]!);
    const [bobPlaced] = await outboxPayloads(theirs);
    await deadLetter(JSON.stringify(alicePlaced!.payload), alicePlaced!.payload.id, 'bridge refused it');
    await deadLetter('{"email":"alice@example.com", broken', 'malformed-1', 'body is not JSON: …');
    await deadLetter(JSON.stringify(bobPlaced!.payload), bobPlaced!.payload.id, 'bridge refused it');
    const timelinesBefore = await Promise.all(mine.map(async (id) => (await getOrder(db.pool, id))!.events));
    const bobBefore = await getOrder(db.pool, theirs);

    // A dry run counts the same and changes nothing.
    const dryRun = await eraseCustomer({ pool: db.pool, connection, client, config, logger }, customer, {
      dryRun: true,
    });
    expect(dryRun).toMatchObject({ command: 'erase-customer --dry-run', ok: true });
    expect(dryRun.items[0]).toMatchObject({
      id: customer,
      outcome: 'would-erase',
      details: { orders: 2, notifications: 2, analyticsOrders: 1, ordersOfCustomer: 2 },
    });
    expect(dryRun.items.find((i) => i.id === dlqName(config.BRIDGE_QUEUE))).toMatchObject({
      outcome: 'would-scrub',
      details: { scrubbed: 2, untouched: 1 },
    });
    expect((await getOrder(db.pool, mine[0]!))!.email).toBe('alice@example.com');
    // Handed back (a quorum queue requeues them a moment later), unchanged.
    await waitFor(async () => (await dlqDepth()) === 3, { what: 'the three dead letters back' });
    expect((await drainDlq()).map((m) => m.properties.headers?.['x-erased-at'])).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
    await waitFor(async () => (await dlqDepth()) === 3, { what: 'the three dead letters back' });

    const result = await eraseCustomer({ pool: db.pool, connection, client, config, logger }, customer);
    expect(result.ok).toBe(true);
    expect(result.items[0]).toMatchObject({
      id: customer,
      outcome: 'erased',
      details: { orders: 2, notifications: 2, analyticsOrders: 1, ordersOfCustomer: 2 },
    });
    expect(result.items.find((i) => i.id === dlqName(config.BRIDGE_QUEUE))).toMatchObject({
      outcome: 'scrubbed',
      details: { scrubbed: 2, untouched: 1 },
    });

    // The orders keep their money, lines, statuses and timelines; no address, no words.
    for (const [i, id] of mine.entries()) {
      const view = (await getOrder(db.pool, id))!;
      expect(view).toMatchObject({ email: null, total: '25.00', customerId: customer });
      expect(view.items).toEqual([{ sku, qty: 2, unitPrice: '12.50', lineTotal: '25.00' }]);
      expect(view.events).toEqual(timelinesBefore[i]);
      expect(view.notifications.every((n) => n.recipient === null)).toBe(true);
    }
    // The status reason is the cancel code's wording (the system's); the customer's note is gone.
    expect((await getOrder(db.pool, mine[1]!))!).toMatchObject({
      status: 'CANCELLED',
      statusReason: 'changed my mind',
    });
    const { rows: notes } = await db.pool.query('select cancel_note from orders where id = $1', [mine[1]]);
    expect(notes).toEqual([{ cancel_note: null }]);
    const { rows: stored } = await db.pool.query<{ text: string }>(
      `select concat_ws(' ', o.email, o.status_reason, o.cancel_note,
                 (select string_agg(concat_ws(' ', n.recipient, n.body), ' ') from notifications n where n.order_id = o.id),
                 (select string_agg(e.payload::text, ' ') from event_outbox e where e.order_id = o.id),
                 (select a.failure_detail from analytics_orders a where a.order_id = o.id)) as text
         from orders o where o.customer_id = $1`,
      [customer],
    );
    for (const { text } of stored) {
      expect(text).not.toMatch(/alice|7700/);
    }
    const placedNow = (await outboxPayloads(mine[0]!))[0]!.payload as EventEnvelope<'order.placed'>;
    expect(placedNow.data).toMatchObject({ customerId: customer, total: '25.00', currency: 'USD' });
    expect(placedNow.data).not.toHaveProperty('email');

    // Bob untouched, in the database and in the DLQ.
    expect(await getOrder(db.pool, theirs)).toEqual(bobBefore);
    const dlq = await drainDlq();
    const byId = (id: string) => dlq.find((m) => m.properties.messageId === id)!;
    expect(dlq.map((m) => m.properties.messageId).sort()).toEqual(
      [bobPlaced!.payload.id, alicePlaced!.payload.id, 'malformed-1'].sort(),
    );
    expect(byId(bobPlaced!.payload.id).content.toString()).toBe(JSON.stringify(bobPlaced!.payload));
    // Alice's dead letters: still there with their reason, scrubbed, her order.placed still an event.
    const alice = byId(alicePlaced!.payload.id);
    const scrubbed = JSON.parse(alice.content.toString()) as EventEnvelope<'order.placed'>;
    expect(scrubbed).toMatchObject({
      id: alicePlaced!.payload.id,
      orderId: mine[0],
      data: { customerId: customer },
    });
    expect(scrubbed.data).not.toHaveProperty('email');
    expect(alice.properties.headers?.[DEAD_LETTER_HEADERS.reason]).toBe('bridge refused it');
    expect(alice.properties.headers?.['x-erased-at']).toEqual(expect.any(String));
    expect(byId('malformed-1').content.length).toBe(0);
    expect(byId('malformed-1').properties.headers?.[DEAD_LETTER_HEADERS.reason]).toBe('body is not JSON: …');

    // Again: nothing more to change.
    const again = await eraseCustomer({ pool: db.pool, connection, client, config, logger }, customer);
    expect(again.items[0]).toMatchObject({
      details: { orders: 0, notifications: 0, outboxEvents: 0, analyticsOrders: 0 },
    });
  });

  test("another customer's dead letter stays as it is, even when it holds an address the erased customer used too", async () => {
    // A client chooses the address it orders with: Carol ordered with Dan's address.
    const sku = await createProduct(db.pool, { stock: 10 });
    const carol = `C-ERASE-${shortId()}`;
    const dan = `C-KEEP-${shortId()}`;
    const shared = `dan-${shortId()}@example.com`;
    const carols = await place(carol, shared, sku);
    const dans = await place(dan, shared, sku);
    await transitionOrder(db.pool, carols, 'CANCELLED', { reason: 'test' });
    const [danPlaced] = await outboxPayloads(dans);
    const body = JSON.stringify(danPlaced!.payload);
    await deadLetter(body, danPlaced!.payload.id, 'bridge refused it');
    // Forged ones naming Dan's order but holding more of Carol (her id; an address only she used):
    // hers to erase, whatever order they name.
    const carolOnly = `carol-${shortId()}@example.com`;
    await place(carol, carolOnly, sku).then((id) =>
      transitionOrder(db.pool, id, 'CANCELLED', { reason: 'test' }),
    );
    const forged = [
      { ...danPlaced!.payload, id: randomUUID(), data: { customerId: carol, email: shared } },
      { ...danPlaced!.payload, id: randomUUID(), data: { customerId: dan, email: carolOnly } },
    ];
    for (const event of forged) await deadLetter(JSON.stringify(event), event.id, 'forged');

    const result = await eraseCustomer({ pool: db.pool, connection, client, config, logger }, carol);

    // Counted (with the other tests' dead letters of other customers' orders, still in the queue).
    const queue = result.items.find((i) => i.id === dlqName(config.BRIDGE_QUEUE))!;
    expect(queue.details!.otherCustomers).toBeGreaterThanOrEqual(1);
    const kept = (await drainDlq()).find((m) => m.properties.messageId === danPlaced!.payload.id)!;
    expect(kept.content.toString()).toBe(body);
    expect(kept.properties.headers?.[DEAD_LETTER_HEADERS.reason]).toBe('bridge refused it');
    expect(kept.properties.headers).not.toHaveProperty('x-erased-at');
    for (const event of forged) {
      const copy = (await drainDlq()).find((m) => m.properties.messageId === event.id)!;
      expect(copy.properties.headers?.['x-erased-at']).toEqual(expect.any(String));
      expect(copy.content.toString()).not.toMatch(new RegExp(`${shared}|${carolOnly}`));
    }
    expect((await getOrder(db.pool, dans))!.email).toBe(shared);
    expect((await getOrder(db.pool, carols))!.email).toBeNull();
  });

  test('a run that fails in the dead-letter step erases nothing yet, so the next one still finds the addresses', async () => {
    const sku = await createProduct(db.pool, { stock: 10 });
    const customer = `C-RETRY-${shortId()}`;
    const orderId = await place(customer, 'dave@example.com', sku);
    await db.pool.query(`update orders set status = 'COMPLETED' where id = $1::uuid`, [orderId]);
    // A malformed dead letter that names the customer by address only.
    await deadLetter('{"email":"dave@example.com", broken', `malformed-${shortId()}`, 'body is not JSON: …');

    const lost = await amqplib.connect(config.AMQP_URL);
    await lost.close(); // the broker connection drops
    await expect(
      eraseCustomer({ pool: db.pool, connection: lost, client, config, logger }, customer),
    ).rejects.toThrow();
    expect((await getOrder(db.pool, orderId))!.email).toBe('dave@example.com');

    const result = await eraseCustomer({ pool: db.pool, connection, client, config, logger }, customer);
    expect(result.ok).toBe(true);
    expect((await getOrder(db.pool, orderId))!.email).toBeNull();
    const left = (await drainDlq()).map((m) => m.content.toString('utf8'));
    expect(left.some((body) => body.includes('dave@example.com'))).toBe(false);
  });

  test('scrubbed dead letters keep their trust, no more; another address that merely contains hers is left alone', async () => {
    const sku = await createProduct(db.pool, { stock: 10, price: '12.50' });
    const customer = `C-TRUST-${shortId()}`;
    const orderId = await place(customer, 'ann@example.co', sku);
    const neighbour = await place(`C-NEXT-${shortId()}`, 'ann@example.com', sku);
    await db.pool.query(`update orders set status = 'COMPLETED' where id = any($1::uuid[])`, [
      [orderId, neighbour],
    ]);
    const payment = (amount: string) =>
      buildEvent('payment.completed', {
        id: randomUUID(),
        orderId,
        correlationId: `corr-${shortId()}`,
        data: { amount, currency: 'USD', reference: `ref-${shortId()}`, customerId: customer },
      });
    const trusted = payment('25.00');
    const forged = payment('900.00');
    await loyaltyDeadLetter(trusted, TEST_PUBLISHER);
    await loyaltyDeadLetter(forged, 'mallory');
    const [neighbourPlaced] = await outboxPayloads(neighbour);
    await deadLetter(
      JSON.stringify(neighbourPlaced!.payload),
      neighbourPlaced!.payload.id,
      'bridge refused it',
    );
    await deadLetter('to=ANN@example.co; bounced', `note-${shortId()}`, 'body is not JSON: …');

    const result = await eraseCustomer({ pool: db.pool, connection, client, config, logger }, customer);
    expect(result.ok).toBe(true);
    expect(result.items.find((i) => i.id === dlqName(config.LOYALTY_QUEUE))).toMatchObject({
      details: { scrubbed: 2, untouched: 0 },
    });

    // The trusted award can still be re-driven once loyalty is fixed; the forged one still cannot.
    const redrive = await redriveDeadLetters(
      { connection, config, logger },
      { queue: config.LOYALTY_QUEUE, dryRun: true },
    );
    const byId = Object.fromEntries(redrive.items.map((i) => [i.id, i]));
    expect(byId[trusted.id]).toMatchObject({ ok: true, outcome: 'would-redrive' });
    expect(byId[forged.id]).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/not sent by a trusted producer/),
    });
    // ann@example.com is someone else: her dead letter is as it was; the note naming Ann (any case) is emptied.
    const bridgeDlq = await drainDlq();
    const theirs = bridgeDlq.find((m) => m.properties.messageId === neighbourPlaced!.payload.id)!;
    expect(theirs.content.toString()).toBe(JSON.stringify(neighbourPlaced!.payload));
    expect(theirs.properties.headers?.['x-erased-at']).toBeUndefined();
    expect(bridgeDlq.some((m) => /ann@example\.co\b(?!m)/i.test(m.content.toString()))).toBe(false);
    expect((await getOrder(db.pool, neighbour))!.email).toBe('ann@example.com');
  });

  test('after the erasure no retry charges the customer, and a late cancel note is not stored', async () => {
    const sku = await createProduct(db.pool, { stock: 10 });
    const customer = `C-GONE-${shortId()}`;
    const orderId = await place(customer, 'erin@example.com', sku);
    // Declined, nothing charged: an operator's bulk retry of PAYMENT_FAILED orders would pick it.
    await db.pool.query(`update orders set status = 'PAYMENT_FAILED', started_run = 1 where id = $1::uuid`, [
      orderId,
    ]);
    expect((await eraseCustomer({ pool: db.pool, connection, client, config, logger }, customer)).ok).toBe(
      true,
    );
    expect(await retryOrder(db.pool, orderId, { reason: 'gateway back', latest: undefined })).toMatchObject({
      kind: 'refused',
      reason: expect.stringMatching(/erased/),
    });
    // A cancel that was answered just before the erasure records its note just after it.
    await recordCancelReason(db.pool, orderId, {
      code: 'changed_mind',
      note: 'erin: +44 7700 900456',
      confirmed: true,
    });
    const { rows } = await db.pool.query('select cancel_note, status, run from orders where id = $1', [
      orderId,
    ]);
    expect(rows).toEqual([{ cancel_note: null, status: 'PAYMENT_FAILED', run: 1 }]);
  });

  test('refused under a login that is not trusted (its copies would lose their trust), erasing nothing', async () => {
    const sku = await createProduct(db.pool, { stock: 10 });
    const customer = `C-LOGIN-${shortId()}`;
    const orderId = await place(customer, 'gus@example.com', sku);
    await db.pool.query(`update orders set status = 'COMPLETED' where id = $1::uuid`, [orderId]);
    const result = await eraseCustomer(
      {
        pool: db.pool,
        connection,
        client,
        config: { ...config, AMQP_TRUSTED_PUBLISHERS: ['acme-outbox'] },
        logger,
      },
      customer,
    );
    expect(result.items).toMatchObject([
      { ok: false, outcome: 'refused', reason: expect.stringMatching(/not one of AMQP_TRUSTED_PUBLISHERS/) },
    ]);
    expect((await getOrder(db.pool, orderId))!.email).toBe('gus@example.com');
  });

  test('an id with no orders and no dead letter naming it is reported not found (exit 1), not erased', async () => {
    const result = await eraseCustomer(
      { pool: db.pool, connection, client, config, logger },
      `c-nobody-${shortId()}`,
    );
    expect(result.ok).toBe(false);
    expect(result.items).toMatchObject([
      { outcome: 'not-found', reason: expect.stringMatching(/no orders/) },
    ]);
  });

  test('a second run, after the first nulled the addresses, still finds the address in dead letters that came since', async () => {
    const sku = await createProduct(db.pool, { stock: 10 });
    const customer = `C-AGAIN-${shortId()}`;
    const address = `again-${shortId()}@example.com`;
    const id = await place(customer, address, sku);
    await transitionOrder(db.pool, id, 'CANCELLED', { reason: 'test' });
    const placed = (await outboxPayloads(id))[0]!.payload;
    const first = await eraseCustomer({ pool: db.pool, connection, client, config, logger }, customer);
    expect(first.items[0]).toMatchObject({ outcome: 'erased' });
    // Dead-lettered after it (a consumer that was still retrying them): the order's event, as it was
    // published, and a malformed body that names only the address.
    await deadLetter(JSON.stringify(placed), placed.id, 'analytics gave up');
    await deadLetter(`bounce for ${address} (broken`, `malformed-${shortId()}`, 'body is not JSON');

    const again = await eraseCustomer({ pool: db.pool, connection, client, config, logger }, customer);

    expect(again.ok).toBe(true);
    for (const msg of await drainDlq()) expect(msg.content.toString()).not.toContain(address);
  });

  test('an id with no orders but named by dead letters has those scrubbed (exit 0), and nothing else changes', async () => {
    // An event of an order this database never had (another deployment's, or forged), naming them.
    const customer = `C-GHOST-${shortId()}`;
    const address = `ghost-${shortId()}@example.com`;
    const event = buildEvent('order.placed', {
      id: randomUUID(),
      orderId: randomUUID(),
      correlationId: `corr-${shortId()}`,
      data: { customerId: customer, email: address, items: [], total: '1.00', currency: 'EUR' },
    });
    await deadLetter(JSON.stringify(event), event.id, 'no such order');

    const result = await eraseCustomer({ pool: db.pool, connection, client, config, logger }, customer);

    expect(result.ok).toBe(true);
    expect(result.items[0]).toMatchObject({ id: customer, ok: true, outcome: 'no-orders' });
    const queue = result.items.find((i) => i.id === dlqName(config.BRIDGE_QUEUE))!;
    expect(queue.details!.scrubbed).toBeGreaterThanOrEqual(1);
    const copy = (await drainDlq()).find((m) => m.properties.messageId === event.id)!;
    expect(copy.properties.headers?.['x-erased-at']).toEqual(expect.any(String));
    expect(copy.content.toString()).not.toContain(address);
    expect(JSON.parse(copy.content.toString())).toMatchObject({
      id: event.id,
      data: { customerId: customer },
    });
  });

  test('refused while a saga of the customer still runs, though its order is final in the database', async () => {
    const sku = await createProduct(db.pool, { stock: 10 });
    const customer = `C-SAGA-${shortId()}`;
    const orderId = await place(customer, 'hal@example.com', sku);
    // The saga recorded PAYMENT_FAILED and is about to e-mail the customer: its run is still open
    // (here a run nobody works on, on a task queue of its own).
    await db.pool.query(`update orders set status = 'PAYMENT_FAILED' where id = $1::uuid`, [orderId]);
    const input = {
      orderId,
      customerId: customer,
      correlationId: `corr-${shortId()}`,
      run: 1,
      paymentDeadlineMs: 60_000,
    };
    expect(await startOrderSaga(client, input, `erase-nobody-polls-${shortId()}`)).toBe('started');
    await expectRefusedWhileRunning(customer, orderId, 'hal@example.com', 'saga');
    const running = runningQuery(orderId);
    await waitFor(async () => (await client.workflow.count(running)).count === 0, {
      what: 'the ended saga in visibility',
    });
    const erased = await eraseCustomer({ pool: db.pool, connection, client, config, logger }, customer);
    expect(erased.items[0]).toMatchObject({ ok: true, outcome: 'erased' });
  });

  test('refused while a settlement of the customer’s order runs: it may still send the cancel’s e-mail', async () => {
    const sku = await createProduct(db.pool, { stock: 10 });
    const customer = `C-SETTLE-${shortId()}`;
    const orderId = await place(customer, 'sue@example.com', sku);
    await db.pool.query(`update orders set status = 'PAYMENT_FAILED' where id = $1::uuid`, [orderId]);
    // An operator's settlement finishing a cancel (here one nobody works on, on a task queue of its own).
    await startSettlement(
      client,
      { orderId, correlationId: `corr-${shortId()}`, run: 1, reason: 'test' },
      { taskQueue: `erase-nobody-polls-${shortId()}`, customerId: customer, status: 'PAYMENT_FAILED' },
    );
    await expectRefusedWhileRunning(customer, orderId, 'sue@example.com', 'settlement');
  });

  test('a customer id that cannot be one is a usage error', async () => {
    await expect(
      eraseCustomer({ pool: db.pool, connection, client, config, logger }, 'C100" OR CustomerId != "'),
    ).rejects.toThrow(/not a customer id/);
  });

  test('refused while an order of the customer is under way (exit 1), changing nothing', async () => {
    const sku = await createProduct(db.pool, { stock: 10 });
    const customer = `C-OPEN-${shortId()}`;
    const open = await place(customer, 'carol@example.com', sku);
    const out: string[] = [];
    const io = {
      stdout: { write: (s: string) => out.push(s) },
      stderr: { write: (s: string) => out.push(s) },
    };
    const code = await runCli(['erase-customer', customer, '--json'], io as never, ({ verbose }) =>
      createCliContext({ verbose, config }),
    );
    expect(code).toBe(1);
    const result = JSON.parse(out.join('')) as { items: Array<{ outcome: string; reason: string }> };
    expect(result.items[0]).toMatchObject({ outcome: 'refused' });
    expect(result.items[0]!.reason).toContain(open);
    expect((await getOrder(db.pool, open))!.email).toBe('carol@example.com');
  });
});
