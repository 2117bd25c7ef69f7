/**
 * Hostile AMQP messages (issue 11 items 5, 6 and 8) against the loyalty and analytics subscribers
 * and the bridge, on the real RabbitMQ, PostgreSQL and Temporal: each one has its exact outcome (the
 * DLQs it lands in, with the reason, or what it legitimately changed) and nothing else is written or
 * published. A forged `payment.completed` awards nothing, and an operator's re-drive neither
 * launders a forged message nor takes a trusted one's trust away.
 *
 * Two throwaway broker users are made for it through the management API: a forger with the right
 * to publish to this test's exchange and its dead-letter exchange (as a compromised service would
 * have), and an operator.
 */
import { randomUUID } from 'node:crypto';
import amqplib, { type ChannelModel, type ConsumeMessage, type Options } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Client } from '@temporalio/client';
import { connectAmqp, type AmqpConnectionManager } from '../../lib/amqp/connection.js';
import { DEAD_LETTER_HEADERS, type QueueConsumer } from '../../lib/amqp/consumer.js';
import { eventPublishOptions } from '../../lib/amqp/publisher.js';
import { dlxName } from '../../lib/amqp/topology.js';
import type { Config } from '../../lib/config.js';
import { buildEvent, type EventEnvelope } from '../../lib/events.js';
import { connectTemporal } from '../../lib/temporal.js';
import { redriveDeadLetters } from '../../ops/dlq.js';
import { createAnalyticsSubscriber } from '../../subscribers/analytics/consumer.js';
import { createLoyaltySubscriber } from '../../subscribers/loyalty/consumer.js';
import { createBridge } from '../../workers/bridge.js';
import {
  captureLogger,
  openObserver,
  shortId,
  TEST_PUBLISHER,
  testConfig,
  waitFor,
  type Observer,
} from '../helpers/amqp.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

const id = shortId();
const FORGER = `test-forger-${id}`;
const OPERATOR = `test-operator-${id}`;
const PASSWORD = randomUUID();

let db: TestDatabase;
let config: Config;
let observer: Observer;
let amqp: AmqpConnectionManager;
let temporal: Client;
let forger: ChannelModel;
let consumers: QueueConsumer[] = [];
/** Everything that went through the test's exchange and its dead-letter exchange. */
let onExchange: ConsumeMessage[];
let onDlx: ConsumeMessage[];

const management = async (method: string, path: string, body?: unknown) => {
  const admin = new URL(config.AMQP_URL);
  const auth = Buffer.from(
    `${decodeURIComponent(admin.username || 'guest')}:${decodeURIComponent(admin.password || 'guest')}`,
  );
  const res = await fetch(`http://${admin.hostname}:15672/api/${path}`, {
    method,
    headers: { authorization: `Basic ${auth.toString('base64')}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok && !(method === 'DELETE' && res.status === 404))
    throw new Error(`management API ${method} ${path}: ${res.status} ${await res.text()}`);
};
const userUrl = (user: string) => {
  const url = new URL(config.AMQP_URL);
  url.username = user;
  url.password = PASSWORD;
  return url.toString();
};

beforeAll(async () => {
  db = await createTestDatabase();
  config = testConfig(id, {
    DATABASE_URL: db.url,
    // The test's own login plays the outbox publisher and reads every queue; the operator's login
    // is trusted too.
    AMQP_TRUSTED_PUBLISHERS: `${TEST_PUBLISHER},${OPERATOR}`,
    BRIDGE_AMQP_USER: TEST_PUBLISHER,
    LOYALTY_AMQP_USER: TEST_PUBLISHER,
    ANALYTICS_AMQP_USER: TEST_PUBLISHER,
    AMQP_MAX_MESSAGE_BYTES: String(16 * 1024),
    LOYALTY_MAX_DELIVERIES: '1',
    ANALYTICS_MAX_DELIVERIES: '1',
  });
  observer = await openObserver();
  for (const user of [FORGER, OPERATOR]) {
    await management('PUT', `users/${user}`, { password: PASSWORD, tags: '' });
    // The forger may publish to this test's exchange and its dead-letter exchange only (as a
    // compromised subscriber could, for its own dead letters); the operator to its queues too.
    const write =
      user === FORGER
        ? `^${config.AMQP_EXCHANGE.replaceAll('.', '\\.')}(\\.dlx)?$`
        : `^(test\\.${id}.*|amq\\.default)$`;
    await management('PUT', `permissions/%2F/${user}`, { configure: '', write, read: `^test\\.${id}.*` });
  }
  forger = await amqplib.connect(userUrl(FORGER));
  const { logger } = captureLogger('warn');
  amqp = connectAmqp(config, { name: `test-hostile-${id}`, logger });
  temporal = await connectTemporal(config);
  consumers = [
    createLoyaltySubscriber({ amqp, pool: db.pool, config, logger, retryDelayMs: () => 50 }),
    createAnalyticsSubscriber({ amqp, pool: db.pool, config, logger, retryDelayMs: () => 50 }),
    createBridge({ amqp, temporal, pool: db.pool, config, logger, retryDelayMs: () => 50 }),
  ];
  for (const c of consumers) await c.start();
  onExchange = await observer.observe(config.AMQP_EXCHANGE, '#');
  await observer.channel.assertExchange(dlxName(config.AMQP_EXCHANGE), 'direct', { durable: true });
  const { queue } = await observer.channel.assertQueue('', { exclusive: true, autoDelete: true });
  for (const q of [config.LOYALTY_QUEUE, config.ANALYTICS_QUEUE, config.BRIDGE_QUEUE])
    await observer.channel.bindQueue(queue, dlxName(config.AMQP_EXCHANGE), q);
  onDlx = [];
  await observer.channel.consume(queue, (msg) => msg && onDlx.push(msg), { noAck: true });
}, 60_000);

afterAll(async () => {
  for (const c of consumers) await c.stop();
  await amqp?.close();
  await forger?.close().catch(() => {});
  await temporal?.connection.close();
  await observer?.cleanup(config.AMQP_EXCHANGE, [
    config.LOYALTY_QUEUE,
    config.ANALYTICS_QUEUE,
    config.BRIDGE_QUEUE,
  ]);
  await observer?.close();
  for (const user of [FORGER, OPERATOR]) await management('DELETE', `users/${user}`).catch(() => {});
  await db?.drop();
});

// ---------------------------------------------------------------------------------------------------

const trusted = (event: { id: string; type: string }, extra: Options.Publish = {}) => ({
  ...eventPublishOptions({ id: event.id, type: event.type }, 'acme-outbox', TEST_PUBLISHER),
  ...extra,
});

function payment(amount: string | number = '25.00', orderId = randomUUID(), reference = `ref-${shortId()}`) {
  return {
    ...buildEvent('payment.completed', {
      id: randomUUID(),
      orderId,
      correlationId: `corr-${shortId()}`,
      data: { amount: String(amount), currency: 'USD', reference, customerId: 'C-HOSTILE' },
    }),
    ...(typeof amount === 'number'
      ? { data: { amount, currency: 'USD', reference, customerId: 'C-HOSTILE' } }
      : {}),
  } as EventEnvelope<'payment.completed'>;
}

async function publishAs(
  channelOwner: ChannelModel,
  routingKey: string,
  body: Buffer | object,
  options: Options.Publish,
  exchange = config.AMQP_EXCHANGE,
): Promise<void> {
  const channel = await channelOwner.createConfirmChannel();
  try {
    channel.publish(
      exchange,
      routingKey,
      Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body)),
      options,
    );
    await channel.waitForConfirms();
  } finally {
    await channel.close().catch(() => {});
  }
}

const publishTrusted = (routingKey: string, body: Buffer | object, options: Options.Publish) =>
  publishAs(observer.admin, routingKey, body, options);

/** The DLQ entries of one message id, as (queue, reason) pairs, once `count` have arrived. */
async function deadLettersOf(messageId: string, count: number): Promise<Array<[string, string]>> {
  const mine = await waitFor(
    () => {
      const found = onDlx.filter((m) => m.properties.messageId === messageId);
      return found.length >= count ? found : undefined;
    },
    { what: `${count} dead letter(s) of ${messageId}`, timeoutMs: 15_000 },
  );
  return mine
    .map((m): [string, string] => [
      String(m.properties.headers?.[DEAD_LETTER_HEADERS.queue]),
      String(m.properties.headers?.[DEAD_LETTER_HEADERS.reason]),
    ])
    .sort();
}

async function tables() {
  const q = async (sql: string) => (await db.pool.query(sql)).rows;
  return {
    points: await q(
      'select order_id, points, reference, revoked_at is not null as revoked from loyalty_points order by order_id',
    ),
    analyticsOrders: await q('select order_id, amount, final_status from analytics_orders order by order_id'),
    analyticsPayments: await q('select event_id, kind, amount from analytics_payments order by event_id'),
    processed: await q('select consumer, event_id from processed_events order by 1, 2'),
    outbox: await q('select event_id from event_outbox'),
    orders: await q('select id from orders'),
  };
}

/** Lets the consumers settle what was sent: the DLQ entries have arrived and the queues are empty. */
async function settled(): Promise<void> {
  await waitFor(
    async () => {
      for (const q of [config.LOYALTY_QUEUE, config.ANALYTICS_QUEUE, config.BRIDGE_QUEUE])
        if ((await observer.messageCount(q)) > 0) return false;
      return true;
    },
    { what: 'every queue empty' },
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
}

const LOYALTY = () => config.LOYALTY_QUEUE;
const ANALYTICS = () => config.ANALYTICS_QUEUE;

describe('hostile AMQP messages', () => {
  test('each lands where it must, with its reason, and changes nothing', async () => {
    const before = await tables();
    const exchangeBefore = onExchange.length;
    const cases: Array<{ name: string; send: () => Promise<string>; dlq: Array<[() => string, RegExp]> }> = [
      {
        name: '1. malformed JSON',
        send: async () => {
          const mid = randomUUID();
          await publishTrusted(
            'payment.completed',
            Buffer.from('{"id": "x", "type": "payment.completed",'),
            trusted({ id: mid, type: 'payment.completed' }),
          );
          return mid;
        },
        dlq: [
          [ANALYTICS, /body is not JSON/],
          [LOYALTY, /body is not JSON/],
        ],
      },
      {
        name: '2. oversized (20 KiB, limit 16 KiB)',
        send: async () => {
          const event = { ...payment(), padding: 'x'.repeat(20 * 1024) };
          await publishTrusted('payment.completed', event, trusted(event));
          return event.id;
        },
        dlq: [
          [ANALYTICS, /message too large: \d+ bytes, more than the 16384/],
          [LOYALTY, /message too large/],
        ],
      },
      {
        name: '3. forged payment.completed: another broker user, its own validated user_id',
        send: async () => {
          const event = payment('500.00');
          await publishAs(
            forger,
            'payment.completed',
            event,
            eventPublishOptions({ id: event.id, type: event.type }, 'acme-outbox', FORGER),
          );
          return event.id;
        },
        dlq: [
          [ANALYTICS, new RegExp(`untrusted publisher: user_id "${FORGER}"`)],
          [LOYALTY, /untrusted publisher/],
        ],
      },
      {
        name: '4. forged: no user_id at all, and a header claiming the outbox sent it',
        send: async () => {
          const event = payment('500.00');
          await publishAs(forger, 'payment.completed', event, {
            ...eventPublishOptions({ id: event.id, type: event.type }, 'acme-outbox'),
            headers: { [DEAD_LETTER_HEADERS.userId]: TEST_PUBLISHER },
          });
          return event.id;
        },
        dlq: [
          [ANALYTICS, /untrusted publisher: no user_id/],
          [LOYALTY, /untrusted publisher: no user_id/],
        ],
      },
      {
        name: '5. wrong types: the amount a JSON number',
        send: async () => {
          const event = payment(42.5);
          await publishTrusted('payment.completed', event, trusted(event));
          return event.id;
        },
        dlq: [
          [ANALYTICS, /invalid .*data\.amount/],
          [LOYALTY, /invalid .*data\.amount/],
        ],
      },
      {
        name: '6. missing fields: no reference, no orderId',
        send: async () => {
          const { orderId: _o, ...event } = payment();
          delete (event.data as Partial<typeof event.data>).reference;
          await publishTrusted('payment.completed', event, trusted(event));
          return event.id;
        },
        dlq: [
          [ANALYTICS, /invalid .*orderId/],
          [LOYALTY, /invalid .*orderId/],
        ],
      },
      {
        name: '7. a huge amount',
        send: async () => {
          const event = payment('999999999.00');
          await publishTrusted('payment.completed', event, trusted(event));
          return event.id;
        },
        dlq: [
          [ANALYTICS, /above the plausible maximum of 10000000/],
          [LOYALTY, /above the plausible maximum/],
        ],
      },
      {
        name: '8. an amount with more than 2 decimals',
        send: async () => {
          const event = payment('10.001');
          await publishTrusted('payment.completed', event, trusted(event));
          return event.id;
        },
        dlq: [
          [ANALYTICS, /invalid .*data\.amount|at most 2 decimals/],
          [LOYALTY, /at most 2 decimals/],
        ],
      },
      {
        name: '9. wrong routing key: a payment.completed routed as order.placed',
        send: async () => {
          const event = payment();
          await publishTrusted('order.placed', event, trusted(event));
          return event.id;
        },
        // The bridge (bound to order.placed) refuses its shape; analytics the mismatch; loyalty never sees it.
        dlq: [
          [ANALYTICS, /routing key "order\.placed" does not match the event type "payment\.completed"/],
          [() => config.BRIDGE_QUEUE, /invalid/],
        ],
      },
      {
        name: '10. unknown order: an order.placed, sent straight to the bridge, for no order of ours',
        send: async () => {
          const event = buildEvent('order.placed', {
            id: randomUUID(),
            orderId: randomUUID(),
            correlationId: 'corr-x',
            data: { customerId: 'C-X', email: 'x@example.com', items: [], total: '1.00', currency: 'USD' },
          });
          const channel = await observer.admin.createConfirmChannel();
          channel.publish('', config.BRIDGE_QUEUE, Buffer.from(JSON.stringify(event)), trusted(event));
          await channel.waitForConfirms();
          await channel.close();
          return event.id;
        },
        dlq: [[() => config.BRIDGE_QUEUE, /order [0-9a-f-]+ does not exist; no run started/]],
      },
      {
        name: '11. AMQP type label disagreeing with the body',
        send: async () => {
          const event = payment();
          await publishTrusted('payment.completed', event, trusted(event, { type: 'payment.refunded' }));
          return event.id;
        },
        dlq: [
          [ANALYTICS, /AMQP type "payment\.refunded" does not match/],
          [LOYALTY, /AMQP type "payment\.refunded" does not match/],
        ],
      },
    ];
    const sentIds: string[] = [];
    for (const c of cases) {
      const messageId = await c.send();
      sentIds.push(messageId);
      const expected = c.dlq
        .map(([queue, reason]) => [queue(), reason] as const)
        .sort((a, b) => a[0].localeCompare(b[0]));
      const got = await deadLettersOf(messageId, expected.length);
      expect(
        got.map(([q]) => q),
        c.name,
      ).toEqual(expected.map(([q]) => q));
      for (const [i, [, reason]] of expected.entries()) expect(got[i]![1], c.name).toMatch(reason);
    }
    await settled();
    // Exactly one DLQ entry per expected outcome, nothing more; nothing written anywhere.
    expect(onDlx.filter((m) => sentIds.includes(String(m.properties.messageId)))).toHaveLength(
      cases.reduce((n, c) => n + c.dlq.length, 0),
    );
    expect(await tables()).toEqual(before);
    // Nothing published on the exchange but what the test itself sent there (case 10 went around it).
    expect(
      onExchange
        .slice(exchangeBefore)
        .map((m) => m.properties.messageId)
        .sort(),
    ).toEqual(sentIds.filter((_, i) => i !== 9).sort());
    const workflows = await temporal.workflow.count(`TaskQueue = "${config.TEMPORAL_TASK_QUEUE}"`);
    expect(workflows.count).toBe(0);
  });

  test('a user_id the connection does not own is refused by the broker itself: nothing delivered', async () => {
    const event = payment('500.00');
    const channel = await forger.createConfirmChannel();
    const closed = new Promise<Error>((resolve) => channel.once('error', resolve));
    channel.publish(
      config.AMQP_EXCHANGE,
      'payment.completed',
      Buffer.from(JSON.stringify(event)),
      eventPublishOptions({ id: event.id, type: event.type }, 'acme-outbox', TEST_PUBLISHER),
    );
    expect((await closed).message).toMatch(/PRECONDITION_FAILED.*user_id/);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(onExchange.some((m) => m.properties.messageId === event.id)).toBe(false);
    expect(onDlx.some((m) => m.properties.messageId === event.id)).toBe(false);
    expect(
      (await db.pool.query('select 1 from loyalty_points where order_id = $1', [event.orderId])).rows,
    ).toEqual([]);
  });

  test('duplicated and out of order: applied once, a refund that overtakes its award wins', async () => {
    const dup = payment('30.00');
    await publishTrusted('payment.completed', dup, trusted(dup));
    await publishTrusted('payment.completed', dup, trusted(dup));
    const orderId = randomUUID();
    const reference = `ref-${shortId()}`;
    const award = payment('40.00', orderId, reference);
    const refund = buildEvent('payment.refunded', {
      id: randomUUID(),
      orderId,
      correlationId: 'corr-r',
      data: { amount: '40.00', currency: 'USD', reference, reason: 'cancelled' },
    });
    await publishTrusted('payment.refunded', refund, trusted(refund));
    await settled();
    await publishTrusted('payment.completed', award, trusted(award));
    await settled();
    const points = await db.pool.query<{ order_id: string; points: number; revoked: boolean }>(
      'select order_id::text, points, revoked_at is not null as revoked from loyalty_points where order_id = any($1::uuid[]) order by points',
      [[dup.orderId, orderId]],
    );
    expect(points.rows).toEqual([
      { order_id: orderId, points: 0, revoked: true },
      { order_id: dup.orderId, points: 30, revoked: false },
    ]);
    const payments = await db.pool.query(
      'select kind from analytics_payments where order_id = any($1::uuid[]) order by kind',
      [[dup.orderId, orderId]],
    );
    expect(payments.rows.map((r) => r.kind)).toEqual(['captured', 'captured', 'refunded']);
    expect(onDlx.some((m) => [dup.id, award.id, refund.id].includes(String(m.properties.messageId)))).toBe(
      false,
    );
  });

  test('a re-drive keeps a trusted message’s trust and never launders a forged one', async () => {
    // A trusted payment.completed that loyalty could not take when it came, as loyalty dead-letters
    // it: a copy under loyalty's own login recording the sender (the test's login reads the queues).
    const good = payment('12.00');
    const channel = await observer.admin.createConfirmChannel();
    channel.publish(dlxName(config.AMQP_EXCHANGE), config.LOYALTY_QUEUE, Buffer.from(JSON.stringify(good)), {
      ...eventPublishOptions({ id: good.id, type: good.type }, 'acme-outbox', TEST_PUBLISHER),
      headers: {
        [DEAD_LETTER_HEADERS.reason]: 'database was down too long',
        [DEAD_LETTER_HEADERS.queue]: config.LOYALTY_QUEUE,
        [DEAD_LETTER_HEADERS.userId]: TEST_PUBLISHER,
      },
    });
    await channel.waitForConfirms();
    await channel.close();
    // Next to it, a forged payment.completed loyalty refused (case 3's way) …
    const forged = payment('700.00');
    await publishAs(
      forger,
      'payment.completed',
      forged,
      eventPublishOptions({ id: forged.id, type: forged.type }, 'acme-outbox', FORGER),
    );
    await deadLettersOf(forged.id, 2);
    // … loyalty's copy is its own (user_id = the login that reads the queue) and records the forger …
    const copy = onDlx.find(
      (m) =>
        m.properties.messageId === forged.id &&
        m.properties.headers?.[DEAD_LETTER_HEADERS.queue] === config.LOYALTY_QUEUE,
    );
    expect(copy?.properties.userId).toBe(TEST_PUBLISHER);
    expect(String(copy?.properties.headers?.[DEAD_LETTER_HEADERS.userId])).toBe(FORGER);
    // … and one the forger put straight into loyalty's DLQ through the dead-letter exchange, dressed
    // as a dead letter of a trusted producer's event (a compromised service may publish there).
    const planted = payment('900.00');
    await publishAs(
      forger,
      config.LOYALTY_QUEUE,
      planted,
      {
        ...eventPublishOptions({ id: planted.id, type: planted.type }, 'acme-outbox', FORGER),
        headers: {
          [DEAD_LETTER_HEADERS.reason]: 'database was down too long',
          [DEAD_LETTER_HEADERS.queue]: config.LOYALTY_QUEUE,
          [DEAD_LETTER_HEADERS.userId]: TEST_PUBLISHER,
        },
      },
      dlxName(config.AMQP_EXCHANGE),
    );
    await deadLettersOf(planted.id, 1);
    const connection = await amqplib.connect(userUrl(OPERATOR));
    try {
      const result = await redriveDeadLetters(
        {
          connection,
          config: { ...config, AMQP_URL: userUrl(OPERATOR) },
          logger: captureLogger('warn').logger,
        },
        { queue: config.LOYALTY_QUEUE },
      );
      const byId = Object.fromEntries(result.items.map((i) => [i.id, i]));
      expect(byId[good.id]).toMatchObject({ ok: true, outcome: 'redriven' });
      expect(byId[forged.id]).toMatchObject({
        ok: false,
        outcome: 'kept',
        reason: expect.stringMatching(new RegExp(`not sent by a trusted producer \\(user_id ${FORGER}`)),
      });
      expect(byId[planted.id]).toMatchObject({
        ok: false,
        outcome: 'kept',
        reason: expect.stringMatching(new RegExp(`not sent by a trusted producer \\(user_id ${FORGER}`)),
      });
    } finally {
      await connection.close();
    }
    const points = await waitFor(
      async () =>
        (
          await db.pool.query<{ points: number }>('select points from loyalty_points where order_id = $1', [
            good.orderId,
          ])
        ).rows[0],
      { what: 'the re-driven award' },
    );
    expect(points.points).toBe(12);
    expect(
      (
        await db.pool.query('select 1 from loyalty_points where order_id = any($1::uuid[])', [
          [forged.orderId, planted.orderId],
        ])
      ).rows,
    ).toEqual([]);
  });
});
