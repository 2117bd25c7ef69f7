/**
 * The local setup's least privilege (scripts/provision-access.sh, db/access.ts), on the real servers:
 * the app role reads and writes rows of a database cloned from the tests' template but changes no
 * schema; each service's broker user does its own work and nothing else, and only the outbox's user
 * can publish to the events exchange. The logins are the ones `npm run up` runs the processes with
 * (.data/access/<service>.env, written by `npm run infra -- up`).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import amqplib, { type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  assertConsumerQueue,
  consumerQueueSpecs,
  dlqName,
  loyaltyQueueSpec,
  bridgeQueueSpec,
} from '../../lib/amqp/topology.js';
import { loadConfig } from '../../lib/config.js';
import { buildEvent } from '../../lib/events.js';
import { enqueueEvent } from '../../db/outbox.js';
import { placeOrder } from '../../db/order-placement.js';
import { createPool, type Pool } from '../../db/pool.js';
import { runRetention } from '../../workers/retention.js';
import { createTestDatabase, databaseUrl, type TestDatabase } from '../helpers/db.js';

const ACCESS_DIR = new URL('../../.data/access/', import.meta.url);

/** A service's settings as scripts/as.sh gives them to it. */
function accessOf(service: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(new URL(`${service}.env`, ACCESS_DIR), 'utf8');
  } catch {
    throw new Error(
      `no .data/access/${service}.env: run npm run infra -- up (scripts/provision-access.sh) first`,
    );
  }
  return Object.fromEntries(
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

const defaults = loadConfig({});
let db: TestDatabase;
let app: Pool;

beforeAll(async () => {
  db = await createTestDatabase();
  app = createPool(databaseUrl(db.name, accessOf('api').DATABASE_URL!), 2, 'acme-least-privilege-test');
});
afterAll(async () => {
  await app?.end();
  await db?.drop();
});

describe('PostgreSQL: the app role', () => {
  test('logs in as acme_app, not the schema’s owner', async () => {
    const { rows } = await app.query<{ user: string; owner: string }>(
      `select current_user as user, (select tableowner from pg_tables where tablename = 'orders') as owner`,
    );
    expect(rows[0]).toEqual({ user: 'acme_app', owner: expect.not.stringMatching(/^acme_app$/) });
  });

  test('reads and writes rows: an order placed, its event and timeline written, retention prunes', async () => {
    const outcome = await placeOrder(app, {
      customerId: 'C-LP',
      email: 'lp@example.com',
      items: [{ sku: 'MUG-WHT', qty: 1 }],
      idempotencyKey: `lp-${randomUUID()}`,
      keyRetentionHours: 24,
      maxTotal: 10_000_000,
      requestHash: 'h',
      correlationId: 'corr-lp',
    });
    expect(outcome.kind).toBe('created');
    const orderId = (outcome as { orderId: string }).orderId;
    const event = buildEvent('order.cancelled', {
      id: randomUUID(),
      orderId,
      correlationId: 'c',
      data: { reason: 'x' },
    });
    expect(await enqueueEvent(app, event)).toBe(true);
    const { rows } = await app.query('select type from order_events where order_id = $1 order by seq', [
      orderId,
    ]);
    expect(rows.map((r) => r.type)).toEqual(['order.placed', 'order.cancelled']);
    await expect(runRetention(app, defaults)).resolves.toMatchObject({ outboxRows: 0 });
  });

  test.each([
    ['create a table', 'create table intruder (id int)'],
    ['add a column', 'alter table orders add column intruder int'],
    ['drop a table', 'drop table loyalty_points'],
    ['empty a table at once', 'truncate processed_events'],
    ['rewrite the migration record', `delete from schema_migrations`],
    ['drop the timeline trigger', 'drop trigger order_events_record on event_outbox'],
  ])('cannot %s (42501)', async (_what, sql) => {
    await expect(app.query(sql)).rejects.toMatchObject({ code: '42501' });
  });
});

describe('RabbitMQ: one user per service', () => {
  const connections: ChannelModel[] = [];
  afterAll(async () => {
    for (const c of connections) await c.close().catch(() => {});
  });
  const connect = async (service: string) => {
    const c = await amqplib.connect(accessOf(service).AMQP_URL!);
    c.on('error', () => {});
    connections.push(c);
    return c;
  };
  /** Publishes with confirms; resolves 'ok' or the broker's refusal. */
  const tryPublish = async (c: ChannelModel, exchange: string, routingKey: string): Promise<string> => {
    const channel = await c.createConfirmChannel();
    const refused = new Promise<string>((resolve) =>
      channel.once('error', (err: Error) => resolve(err.message)),
    );
    channel.publish(exchange, routingKey, Buffer.from('{}'), { messageId: randomUUID() });
    const outcome = await Promise.race([channel.waitForConfirms().then(() => 'ok'), refused]);
    await channel.close().catch(() => {});
    return outcome;
  };
  // A routing key no queue is bound to: what the outbox's user may publish is dropped, unseen.
  const NOWHERE = `test.least-privilege.${randomUUID()}`;

  test('only the outbox’s user may publish to the events exchange', async () => {
    expect(await tryPublish(await connect('outbox'), defaults.AMQP_EXCHANGE, NOWHERE)).toBe('ok');
    for (const service of ['api', 'bridge', 'loyalty', 'analytics', 'operator', 'worker'])
      expect(await tryPublish(await connect(service), defaults.AMQP_EXCHANGE, NOWHERE), service).toMatch(
        /ACCESS_REFUSED/,
      );
  });

  // The outbox may write to the DLX too: RabbitMQ creates a queue naming a dead-letter exchange (every
  // consumer's, which the outbox declares before publishing) only for a user that may write to it.
  test('no service but the consumers and the outbox may write dead letters; the operator may re-drive through the default exchange', async () => {
    for (const service of ['api', 'worker'] as const) {
      expect(await tryPublish(await connect(service), `${defaults.AMQP_EXCHANGE}.dlx`, NOWHERE)).toMatch(
        /ACCESS_REFUSED/,
      );
    }
    expect(await tryPublish(await connect('api'), '', dlqName(defaults.LOYALTY_QUEUE))).toMatch(
      /ACCESS_REFUSED/,
    );
    expect(await tryPublish(await connect('loyalty'), `${defaults.AMQP_EXCHANGE}.dlx`, NOWHERE)).toBe('ok');
    expect(await tryPublish(await connect('operator'), '', NOWHERE)).toBe('ok');
  });

  test('each consumer may declare its own queue and not another’s', async () => {
    const loyalty = await (await connect('loyalty')).createConfirmChannel();
    loyalty.on('error', () => {});
    await assertConsumerQueue(loyalty, loyaltyQueueSpec(defaults)); // the same declaration its process makes
    await loyalty.checkQueue(dlqName(defaults.LOYALTY_QUEUE));
    await expect(assertConsumerQueue(loyalty, bridgeQueueSpec(defaults))).rejects.toThrow(/ACCESS_REFUSED/);
  });

  test('the outbox may declare every consumer group’s queue, as it does before publishing, and nothing else', async () => {
    const outbox = await connect('outbox');
    const channel = async () => {
      const c = await outbox.createConfirmChannel();
      c.on('error', () => {});
      return c;
    };
    const declaring = await channel();
    // The same declarations its process makes (bridge, loyalty, analytics), queues, DLQs and bindings.
    for (const spec of consumerQueueSpecs(defaults)) await assertConsumerQueue(declaring, spec);
    await declaring.close();
    // No queue of its own choosing, and none of the consumers' DLQs to read.
    await expect((await channel()).assertQueue(`intruder.${randomUUID()}`)).rejects.toThrow(/ACCESS_REFUSED/);
    await expect((await channel()).get(dlqName(defaults.LOYALTY_QUEUE))).rejects.toThrow(/ACCESS_REFUSED/);
  });
});
