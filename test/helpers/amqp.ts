/**
 * RabbitMQ helpers for integration tests. Every test names its own exchange and queues
 * (`test.<id>...`) and deletes them afterwards, so tests never see each other's messages, and
 * fault injection only closes connections carrying the test's own connection name.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import amqplib, { type Channel, type ChannelModel, type ConsumeMessage, type Message } from 'amqplib';
import { pino, type Logger } from 'pino';
import { loadConfig, type Config } from '../../lib/config.js';
import { amqpUser } from '../../lib/amqp/connection.js';
import { dlqName, dlxName } from '../../lib/amqp/topology.js';

const run = promisify(execFile);

/** The broker user the tests log in as: what they stamp as `user_id` when they play the outbox. */
export const TEST_PUBLISHER = amqpUser(loadConfig({ AMQP_URL: process.env.AMQP_URL }).AMQP_URL);

export const shortId = (): string => randomUUID().replaceAll('-', '').slice(0, 10);

/**
 * Config whose exchange, queues and task queue belong to this test alone. The tests publish as their
 * own login (the admin URL), which is then the trusted publisher, as the outbox user is in a
 * deployment; a test of trust itself overrides AMQP_TRUSTED_PUBLISHERS.
 */
export function testConfig(id: string, overrides: Record<string, string> = {}): Config {
  const url = overrides.AMQP_URL ?? loadConfig({ AMQP_URL: process.env.AMQP_URL }).AMQP_URL;
  return loadConfig({
    ...process.env,
    AMQP_TRUSTED_PUBLISHERS: amqpUser(url),
    AMQP_EXCHANGE: `test.${id}`,
    BRIDGE_QUEUE: `test.${id}.bridge`,
    LOYALTY_QUEUE: `test.${id}.loyalty`,
    ANALYTICS_QUEUE: `test.${id}.analytics`,
    TEMPORAL_TASK_QUEUE: `test-${id}`,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
    ...overrides,
  });
}

export interface Observer {
  admin: ChannelModel;
  channel: Channel;
  /** Binds a fresh exclusive queue to `exchange` with `routingKey` and collects what arrives. */
  observe(exchange: string, routingKey: string): Promise<ConsumeMessage[]>;
  /** Reads every message currently in `queue` (acking them). */
  drain(queue: string): Promise<Message[]>;
  messageCount(queue: string): Promise<number>;
  /** Deletes the queues (and their DLQs) and the exchange with its DLX. */
  cleanup(exchange: string, queues: string[]): Promise<void>;
  close(): Promise<void>;
}

export async function openObserver(url = loadConfig().AMQP_URL): Promise<Observer> {
  const admin = await amqplib.connect(url, { clientProperties: { connection_name: 'test-observer' } });
  const channel = await admin.createChannel();
  return {
    admin,
    channel,
    async observe(exchange, routingKey) {
      await channel.assertExchange(exchange, 'topic', { durable: true });
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
      await channel.bindQueue(queue, exchange, routingKey);
      const seen: ConsumeMessage[] = [];
      await channel.consume(queue, (msg) => msg && seen.push(msg), { noAck: true });
      return seen;
    },
    async drain(queue) {
      const out: Message[] = [];
      for (;;) {
        const msg = await channel.get(queue, { noAck: true });
        if (!msg) return out;
        out.push(msg);
      }
    },
    async messageCount(queue) {
      return (await channel.checkQueue(queue)).messageCount;
    },
    cleanup: (exchange, queues) => deleteTopology(admin, exchange, queues),
    async close() {
      await admin.close().catch(() => {});
    },
  };
}

/**
 * Deletes a test's queues (with their DLQs) and its exchange (with its DLX). A fresh channel for each
 * delete: a failed one (already gone) closes its channel, which must not stop the rest.
 */
export async function deleteTopology(
  connection: ChannelModel,
  exchange: string,
  queues: string[],
): Promise<void> {
  const attempt = async (op: (channel: Channel) => Promise<unknown>) => {
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    await op(channel).catch(() => {});
    await channel.close().catch(() => {});
  };
  for (const queue of queues.flatMap((q) => [q, dlqName(q)])) await attempt((c) => c.deleteQueue(queue));
  for (const name of [exchange, dlxName(exchange)]) await attempt((c) => c.deleteExchange(name));
}

/** Closes, broker-side, every connection whose client-provided name is `name`; returns how many. */
export async function closeConnectionsNamed(name: string): Promise<number> {
  const { stdout } = await run('rabbitmqctl', ['-q', 'list_connections', 'pid', 'client_properties']);
  const pids = stdout
    .split('\n')
    .filter((line) => line.includes(`{"connection_name","${name}"}`))
    .map((line) => line.split('\t')[0]!)
    .filter((pid) => pid.startsWith('<'));
  for (const pid of pids) await run('rabbitmqctl', ['-q', 'close_connection', pid, 'fault injected by test']);
  return pids.length;
}

/** Re-exported: the one waitFor lives in ./wait.ts. */
export { waitFor } from './wait.js';

/** A logger whose JSON lines are kept in `lines` (and printed too when LOG_LEVEL asks for it). */
export function captureLogger(level = 'debug'): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, callback) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      callback();
    },
  });
  return { logger: pino({ level }, stream), lines };
}
