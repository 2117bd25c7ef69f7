/**
 * The real readiness probes every process wires (lib/probes.ts), against the running servers and a
 * dead port. They look at connections the process already holds: probing opens none.
 */
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAmqp, type AmqpConnectionManager } from '../../lib/amqp/connection.js';
import { loadConfig } from '../../lib/config.js';
import { postgresProbe, rabbitmqProbe, temporalProbe } from '../../lib/probes.js';
import { connectTemporal } from '../../lib/temporal.js';
import { createPool, type Pool } from '../../db/pool.js';
import { captureLogger, closeConnectionsNamed, shortId, waitFor } from '../helpers/amqp.js';

const config = loadConfig();
const signal = () => new AbortController().signal;
const { logger } = captureLogger('silent');
const amqpName = `api-probe-test-${shortId()}`;
let temporal: Client;
let pool: Pool;
let amqp: AmqpConnectionManager;

beforeAll(async () => {
  temporal = await connectTemporal(config);
  pool = createPool(config.DATABASE_URL, 1, 'api-probe-test');
  amqp = connectAmqp(config, { name: amqpName, logger });
});
afterAll(async () => {
  await temporal?.connection.close();
  await pool?.end();
  await amqp?.close();
});

describe('readiness probes', () => {
  it('resolve when PostgreSQL, RabbitMQ and Temporal answer', async () => {
    await expect(postgresProbe(pool)(signal())).resolves.toBeUndefined();
    await waitFor(() => amqp.isConnected(), { what: 'the RabbitMQ connection' });
    await expect(rabbitmqProbe(amqp)(signal())).resolves.toBeUndefined();
    await expect(temporalProbe(temporal.connection, 2_000)(signal())).resolves.toBeUndefined();
    await expect(temporalProbe(() => temporal.connection, 2_000)(signal())).resolves.toBeUndefined();
  });

  it('reject when the dependency is not there', async () => {
    const dead = connectAmqp({ AMQP_URL: 'amqp://guest:guest@127.0.0.1:1' }, { name: 'dead', logger });
    try {
      await expect(rabbitmqProbe(dead)(signal())).rejects.toThrow(/not connected/);
    } finally {
      await dead.close();
    }
    await expect(temporalProbe(() => undefined, 500)(signal())).rejects.toThrow(/not connected/);
    const deadPool = createPool('postgres://acme:acme@127.0.0.1:1/acme', 1, 'api-probe-test');
    try {
      await expect(postgresProbe(deadPool)(signal())).rejects.toThrow();
    } finally {
      await deadPool.end();
    }
  });

  it('follow the RabbitMQ connection the process holds: down when the broker drops it, up once it is back', async () => {
    await waitFor(() => amqp.isConnected(), { what: 'the RabbitMQ connection' });
    expect(await closeConnectionsNamed(amqpName)).toBe(1);
    await waitFor(
      () =>
        rabbitmqProbe(amqp)(signal()).then(
          () => false,
          () => true,
        ),
      { what: 'the probe to see the connection gone', timeoutMs: 10_000 },
    );
    await waitFor(() => amqp.isConnected(), { what: 'the reconnect' });
    await expect(rabbitmqProbe(amqp)(signal())).resolves.toBeUndefined();
    // However often it is asked, it is still the one connection.
    for (let i = 0; i < 20; i++) await rabbitmqProbe(amqp)(signal());
    expect(await closeConnectionsNamed(amqpName)).toBe(1);
  });
});
