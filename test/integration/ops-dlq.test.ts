/**
 * `orders dlq` (ops/dlq.ts) against the real RabbitMQ: messages dead-lettered by the real consumer
 * (lib/amqp/consumer.ts createConsumer, refusing them as malformed) are listed, shown without being taken,
 * and redriven onto their queue unchanged. Each test has its own exchange and queues.
 */
import { randomUUID } from 'node:crypto';
import amqplib, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { afterAll, afterEach, beforeAll, beforeEach, expect, test } from 'vitest';
import { DEAD_LETTER_HEADERS, PoisonMessageError, createConsumer } from '../../lib/amqp/consumer.js';
import { amqpUser, connectAmqp } from '../../lib/amqp/connection.js';
import { dlqName } from '../../lib/amqp/topology.js';
import { eventPublishOptions } from '../../lib/amqp/publisher.js';
import type { Config } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { dropDeadLetters, listDeadLetters, redriveDeadLetters, showDeadLetters } from '../../ops/dlq.js';
import { openObserver, shortId, testConfig, waitFor, type Observer } from '../helpers/amqp.js';

const logger = createLogger('ops-dlq-test', 'silent');
let observer: Observer;
let connection: ChannelModel;
let config: Config;

beforeAll(async () => {
  observer = await openObserver();
  connection = await amqplib.connect(testConfig('ops-dlq').AMQP_URL);
});
afterAll(async () => {
  await connection?.close();
  await observer?.close();
});
beforeEach(() => {
  config = testConfig(shortId());
});
afterEach(async () => {
  await observer.cleanup(config.AMQP_EXCHANGE, [config.BRIDGE_QUEUE, config.LOYALTY_QUEUE]);
});

interface Placed {
  id: string;
  orderId: string;
  correlationId: string;
  body: Buffer;
}

/** The real consumer on the bridge queue, refusing every order.placed as malformed (dead-lettered at once). */
function refusingConsumer(name: string, retryDelayMs?: (attempt: number) => number) {
  const amqp = connectAmqp(config, { name: `${name}-${config.AMQP_EXCHANGE}`, logger });
  const consumer = createConsumer({
    manager: amqp,
    user: amqpUser(config.AMQP_URL),
    exchange: config.AMQP_EXCHANGE,
    queue: config.BRIDGE_QUEUE,
    routingKeys: ['order.placed'],
    prefetch: 10,
    maxDeliveries: 3,
    ...(retryDelayMs ? { retryDelayMs } : {}),
    logger,
    handle: async () => {
      throw new PoisonMessageError('invalid order.placed envelope: data.customerId: Required');
    },
  });
  return { amqp, consumer };
}

/**
 * Publishes order.placed events that the bridge queue's consumer refuses as malformed, and waits until
 * they are in its DLQ. `copies` publishes each event that many times (as the outbox may: at least once).
 */
async function deadLetter(count: number, { copies = 1 } = {}): Promise<Placed[]> {
  const { amqp, consumer } = refusingConsumer('test-ops-dlq');
  await consumer.start();
  const events: Placed[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const event = { id: randomUUID(), orderId: randomUUID(), correlationId: `corr-${randomUUID()}` };
      const body = Buffer.from(JSON.stringify({ ...event, type: 'order.placed', version: 1, data: {} }));
      for (let copy = 0; copy < copies; copy++)
        observer.channel.publish(
          config.AMQP_EXCHANGE,
          'order.placed',
          body,
          eventPublishOptions(
            { id: event.id, type: 'order.placed', correlationId: event.correlationId },
            'test',
          ),
        );
      events.push({ ...event, body });
    }
    await waitFor(
      async () => (await observer.messageCount(dlqName(config.BRIDGE_QUEUE))) === count * copies,
      { what: `${count * copies} message(s) in the DLQ` },
    );
  } finally {
    await consumer.stop();
    await amqp.close();
  }
  return events;
}

const deps = () => ({ connection, config, logger });
const counts = async () => ({
  queue: await observer.messageCount(config.BRIDGE_QUEUE),
  dlq: await observer.messageCount(dlqName(config.BRIDGE_QUEUE)),
});

test('list gives each DLQ its count; show describes the messages and leaves them in place', async () => {
  const [event] = await deadLetter(1);

  const listed = await listDeadLetters(deps());
  expect(listed.ok).toBe(true);
  expect(listed.items.map((i) => [i.id, i.outcome, i.details?.messages])).toEqual([
    [dlqName(config.BRIDGE_QUEUE), 'listed', 1],
    [dlqName(config.LOYALTY_QUEUE), 'absent', 0], // the loyalty consumer never ran on this test's queues
    [dlqName(config.ANALYTICS_QUEUE), 'absent', 0],
  ]);

  for (let look = 0; look < 2; look++) {
    const shown = await showDeadLetters(deps(), { queue: config.BRIDGE_QUEUE });
    expect(shown).toMatchObject({ command: 'dlq show', ok: true });
    expect(shown.items).toEqual([
      {
        id: event!.id,
        ok: true,
        outcome: 'dead-lettered',
        details: expect.objectContaining({
          messageId: event!.id,
          type: 'order.placed',
          routingKey: 'order.placed',
          orderId: event!.orderId,
          correlationId: event!.correlationId,
          reason: expect.stringMatching(/data\.customerId/),
          attempts: 1,
          deadLetteredAt: expect.any(String),
          originalQueue: config.BRIDGE_QUEUE,
          body: event!.body.toString(),
        }),
      },
    ]);
    expect(await counts()).toEqual({ queue: 0, dlq: 1 });
  }
});

test('redrive moves a dead letter back onto its queue with the same id, body and properties; --dry-run moves nothing', async () => {
  const [event] = await deadLetter(1);

  const dryRun = await redriveDeadLetters(deps(), { queue: dlqName(config.BRIDGE_QUEUE), dryRun: true });
  expect(dryRun).toMatchObject({ command: 'dlq redrive --dry-run', ok: true });
  expect(dryRun.items.map((i) => [i.id, i.outcome])).toEqual([[event!.id, 'would-redrive']]);
  expect(await counts()).toEqual({ queue: 0, dlq: 1 });

  const redriven = await redriveDeadLetters(deps(), { queue: config.BRIDGE_QUEUE });
  expect(redriven).toMatchObject({ command: 'dlq redrive', ok: true });
  expect(redriven.items.map((i) => [i.id, i.outcome])).toEqual([[event!.id, 'redriven']]);
  expect(await counts()).toEqual({ queue: 1, dlq: 0 });

  const [back] = await observer.drain(config.BRIDGE_QUEUE);
  expect(back!.content.equals(event!.body)).toBe(true);
  expect(back!.properties).toMatchObject({
    messageId: event!.id,
    type: 'order.placed',
    correlationId: event!.correlationId,
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    appId: 'test',
    deliveryMode: 2,
    timestamp: expect.any(Number),
  });
  // Only onto its own queue (through the default exchange), with no dead-letter headers.
  expect(back!.fields.exchange).toBe('');
  for (const header of Object.values(DEAD_LETTER_HEADERS))
    expect(back!.properties.headers).not.toHaveProperty(header);
});

test('drop removes the named dead letters for good, every copy, and leaves the rest; an id not there is not-found; --dry-run drops nothing', async () => {
  const [doomed, kept] = await deadLetter(2, { copies: 2 });
  // Another body under the same id (a forged message, say): not a copy of the one named.
  observer.channel.sendToQueue(dlqName(config.BRIDGE_QUEUE), Buffer.from('{"forged":true}'), {
    messageId: doomed!.id,
    persistent: true,
  });
  await waitFor(async () => (await counts()).dlq === 5, { what: 'five messages in the DLQ' });
  const missing = randomUUID();
  const drop = (dryRun: boolean) =>
    dropDeadLetters(deps(), {
      queue: config.BRIDGE_QUEUE,
      ids: [doomed!.id, missing],
      reason: 'names an order this database never had',
      dryRun,
    });

  const dryRun = await drop(true);
  expect(dryRun).toMatchObject({ command: 'dlq drop --dry-run', ok: false });
  expect(dryRun.items.map((i) => [i.id, i.outcome])).toEqual([
    [doomed!.id, 'would-drop'],
    [doomed!.id, 'would-drop'],
    [doomed!.id, 'kept'],
    [missing, 'not-found'],
  ]);
  // Handed back (a quorum queue requeues them a moment later), none taken.
  await waitFor(async () => (await counts()).dlq === 5, { what: 'all five back in the DLQ' });

  const dropped = await drop(false);
  expect(dropped).toMatchObject({ command: 'dlq drop', ok: false }); // one kept, one id not there
  expect(dropped.items.map((i) => [i.id, i.outcome])).toEqual([
    [doomed!.id, 'dropped'],
    [doomed!.id, 'dropped'],
    [doomed!.id, 'kept'],
    [missing, 'not-found'],
  ]);
  await waitFor(async () => (await counts()).dlq === 3, { what: 'the other three back in the DLQ' });
  expect(await counts()).toEqual({ queue: 0, dlq: 3 });
  const left = await showDeadLetters(deps(), { queue: config.BRIDGE_QUEUE });
  expect(left.items.map((i) => [i.id, i.details?.body])).toEqual([
    [kept!.id, kept!.body.toString()],
    [kept!.id, kept!.body.toString()],
    [doomed!.id, '{"forged":true}'],
  ]);

  // A message without an id is listed by its position, which moves: never dropped by it.
  await expect(
    dropDeadLetters(deps(), {
      queue: config.BRIDGE_QUEUE,
      ids: [`${dlqName(config.BRIDGE_QUEUE)}#1`],
      reason: 'x',
    }),
  ).rejects.toThrow(/a position, not a message id/);
  // Nor an empty id, nor a reason the log could not show as it is.
  const refused = (ids: string[], reason: string) =>
    dropDeadLetters(deps(), { queue: config.BRIDGE_QUEUE, ids, reason });
  await expect(refused([''], 'x')).rejects.toThrow(/none empty/);
  await expect(refused([kept!.id], 'a\u0001b')).rejects.toThrow(
    /--reason must not contain control characters/,
  );
});

test('redrive takes at most --limit messages, and keeps a message whose queue is gone', async () => {
  const events = await deadLetter(2);
  const shown = await showDeadLetters(deps());
  expect(shown.items.map((i) => i.id)).toEqual(events.map((e) => e.id)); // both, oldest first

  const one = await redriveDeadLetters(deps(), { limit: 1 });
  expect(one.items.map((i) => [i.id, i.outcome])).toEqual([[events[0]!.id, 'redriven']]);
  expect(await counts()).toEqual({ queue: 1, dlq: 1 });

  await observer.channel.deleteQueue(config.BRIDGE_QUEUE);
  const kept = await redriveDeadLetters(deps(), {});
  expect(kept.ok).toBe(false);
  expect(kept.items).toMatchObject([{ id: events[1]!.id, ok: false, outcome: 'kept' }]);
  expect(kept.items[0]!.reason).toMatch(/does not exist .* start its consumer/);
  expect(await observer.messageCount(dlqName(config.BRIDGE_QUEUE))).toBe(1);
});

test('redrive sends back one of two copies of an event and removes the other as a duplicate; --dry-run says the same', async () => {
  const [event] = await deadLetter(1, { copies: 2 }); // one event, twice in the DLQ (same message id and body)

  const dryRun = await redriveDeadLetters(deps(), { queue: config.BRIDGE_QUEUE, dryRun: true });
  expect(dryRun).toMatchObject({ command: 'dlq redrive --dry-run', ok: true });
  expect(dryRun.items.map((i) => [i.id, i.ok, i.outcome])).toEqual([
    [event!.id, true, 'would-redrive'],
    [event!.id, true, 'would-remove-duplicate'],
  ]);
  expect(dryRun.items[1]!.reason).toMatch(
    /same message id and body\).* would be removed from .*\.dlq, not sent twice/,
  );
  // Both given back to the DLQ (a moment after the command returns: returns are asynchronous).
  await waitFor(async () => (await counts()).dlq === 2, { what: 'both copies back in the DLQ' });
  expect(await counts()).toEqual({ queue: 0, dlq: 2 });

  const redriven = await redriveDeadLetters(deps(), { queue: config.BRIDGE_QUEUE });
  expect(redriven).toMatchObject({ command: 'dlq redrive', ok: true });
  expect(redriven.items.map((i) => [i.id, i.ok, i.outcome])).toEqual([
    [event!.id, true, 'redriven'],
    [event!.id, true, 'duplicate'],
  ]);
  expect(redriven.items[1]!.reason).toMatch(/removed from .*\.dlq, not sent twice/);
  await waitFor(async () => (await counts()).queue === 1, { what: 'one copy back on its queue' });
  expect(await counts()).toEqual({ queue: 1, dlq: 0 }); // one copy back on its queue, none left behind

  const back = await observer.drain(config.BRIDGE_QUEUE);
  expect(back).toHaveLength(1);
  expect(back[0]!.content.equals(event!.body)).toBe(true);
  expect(back[0]!.properties.messageId).toBe(event!.id);
});

test('redrive does not take back a message it redrove that is dead-lettered again while it runs', async () => {
  const [event] = await deadLetter(1, { copies: 2 });
  const { amqp, consumer } = refusingConsumer('test-ops-dlq-again');
  await consumer.start(); // still refusing: what is redriven comes straight back to the DLQ
  const dlq = dlqName(config.BRIDGE_QUEUE);
  // Each redrive publish is confirmed only once its message is back in the DLQ (the two copies are
  // held unacked meanwhile, so the DLQ's ready count is what came back): the command goes on with the
  // message dead-lettered again right there.
  const confirmedLate = {
    createChannel: () => connection.createChannel(),
    async createConfirmChannel() {
      const channel = await connection.createConfirmChannel();
      const publish = channel.publish.bind(channel);
      channel.publish = ((exchange, routingKey, content, options, confirmed) =>
        publish(exchange, routingKey, content, options, (err, ok) => {
          void waitFor(async () => (await observer.messageCount(dlq)) === 1, {
            what: 'the redriven message dead-lettered again',
          }).then(() => confirmed?.(err, ok));
        })) as ConfirmChannel['publish'];
      return channel;
    },
  } as unknown as ChannelModel;
  try {
    const redriven = await redriveDeadLetters({ ...deps(), connection: confirmedLate }, {});
    expect(redriven).toMatchObject({ command: 'dlq redrive', ok: true });
    expect(redriven.items.map((i) => [i.id, i.outcome])).toEqual([
      [event!.id, 'redriven'],
      [event!.id, 'duplicate'],
    ]);
    // The copy that came back is left in the DLQ for the next run, not redriven around again.
    expect(await counts()).toEqual({ queue: 0, dlq: 1 });
    const [again] = (await showDeadLetters(deps(), { queue: config.BRIDGE_QUEUE })).items;
    expect(again).toMatchObject({ id: event!.id, outcome: 'dead-lettered' });
  } finally {
    await consumer.stop();
    await amqp.close();
  }
});

test('redrive keeps a dead letter older than DLQ_REDRIVE_WINDOW_MS: its dedupe record may be gone', async () => {
  const [event] = await deadLetter(1);
  await new Promise((resolve) => setTimeout(resolve, 1100)); // a whole second old, by its timestamp
  const tooOld = await redriveDeadLetters({ ...deps(), config: { ...config, DLQ_REDRIVE_WINDOW_MS: 0 } }, {});
  expect(tooOld.ok).toBe(false);
  expect(tooOld.items).toMatchObject([{ id: event!.id, ok: false, outcome: 'kept' }]);
  expect(tooOld.items[0]!.reason).toMatch(/longer ago than DLQ_REDRIVE_WINDOW_MS .* may be pruned/);
  expect(await counts()).toEqual({ queue: 0, dlq: 1 });

  // Within the window (the default, 14 days) the same message goes back.
  const redriven = await redriveDeadLetters(deps(), {});
  expect(redriven.items.map((i) => [i.id, i.outcome])).toEqual([[event!.id, 'redriven']]);
  expect(await counts()).toEqual({ queue: 1, dlq: 0 });
});

test('redrive --past-window moves one older than DLQ_REDRIVE_WINDOW_MS too: the operator trusts the effect keys', async () => {
  const [event] = await deadLetter(1);
  await new Promise((resolve) => setTimeout(resolve, 1100));
  const old = { ...deps(), config: { ...config, DLQ_REDRIVE_WINDOW_MS: 0 } };
  const dryRun = await redriveDeadLetters(old, { pastWindow: true, dryRun: true });
  expect(dryRun.items.map((i) => [i.id, i.outcome])).toEqual([[event!.id, 'would-redrive']]);
  await waitFor(async () => (await counts()).dlq === 1, { what: 'the dead letter handed back' });
  const redriven = await redriveDeadLetters(old, { pastWindow: true });
  expect(redriven.items.map((i) => [i.id, i.outcome])).toEqual([[event!.id, 'redriven']]);
  expect(await counts()).toEqual({ queue: 1, dlq: 0 });
});

test('a consumer whose DLQ was deleted keeps the message, declares the DLQ again, and dead-letters it there', async () => {
  const { amqp, consumer } = refusingConsumer('test-ops-dlq-gone', () => 50);
  await consumer.start();
  /** The queue's depth, or undefined when it does not exist (on a channel of its own: a 404 closes it). */
  const depth = async (queue: string) => {
    const channel = await observer.admin.createChannel();
    channel.on('error', () => {});
    const found = await channel.checkQueue(queue).then(
      (q) => q.messageCount,
      () => undefined,
    );
    await channel.close().catch(() => {});
    return found;
  };
  try {
    await waitFor(async () => (await depth(dlqName(config.BRIDGE_QUEUE))) === 0, {
      what: 'the DLQ declared',
    });
    await observer.channel.deleteQueue(dlqName(config.BRIDGE_QUEUE));
    const id = randomUUID();
    observer.channel.publish(
      config.AMQP_EXCHANGE,
      'order.placed',
      Buffer.from(JSON.stringify({ id, type: 'order.placed', version: 1, data: {} })),
      eventPublishOptions({ id, type: 'order.placed' }, 'test'),
    );
    // Not acked into the void: kept, and dead-lettered on its next delivery into the DLQ declared again.
    await waitFor(async () => (await depth(dlqName(config.BRIDGE_QUEUE))) === 1, {
      what: 'the message in the DLQ declared again',
    });
    const [shown] = (await showDeadLetters(deps(), { queue: config.BRIDGE_QUEUE })).items;
    expect(shown).toMatchObject({ id, outcome: 'dead-lettered' });
    expect(await depth(config.BRIDGE_QUEUE)).toBe(0);
  } finally {
    await consumer.stop();
    await amqp.close();
  }
});

test('an unknown --queue is a usage error naming the queues there are', async () => {
  await expect(showDeadLetters(deps(), { queue: 'orders.nope' })).rejects.toThrow(
    new RegExp(`${config.BRIDGE_QUEUE}.*${config.LOYALTY_QUEUE}`),
  );
});
