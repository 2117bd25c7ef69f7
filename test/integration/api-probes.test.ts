/** The real readiness probes that api/main.ts wires, against the running servers and a dead port. */
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresProbe, rabbitmqProbe, temporalProbe } from '../../api/probes.js';
import { loadConfig } from '../../lib/config.js';
import { connectTemporal } from '../../lib/temporal.js';
import { createPool, type Pool } from '../../db/pool.js';

const config = loadConfig();
const signal = () => new AbortController().signal;
let temporal: Client;
let pool: Pool;

beforeAll(async () => {
  temporal = await connectTemporal(config);
  pool = createPool(config.DATABASE_URL, 1, 'api-probe-test');
});
afterAll(async () => {
  await temporal?.connection.close();
  await pool?.end();
});

describe('readiness probes', () => {
  it('resolve when PostgreSQL, RabbitMQ and Temporal answer', async () => {
    await expect(postgresProbe(pool)(signal())).resolves.toBeUndefined();
    await expect(rabbitmqProbe(config.AMQP_URL, 2_000)(signal())).resolves.toBeUndefined();
    await expect(temporalProbe(temporal, 2_000)(signal())).resolves.toBeUndefined();
  });

  it('reject when the dependency is not there', async () => {
    await expect(rabbitmqProbe('amqp://guest:guest@127.0.0.1:1', 500)(signal())).rejects.toThrow();
    const deadPool = createPool('postgres://acme:acme@127.0.0.1:1/acme', 1, 'api-probe-test');
    try {
      await expect(postgresProbe(deadPool)(signal())).rejects.toThrow();
    } finally {
      await deadPool.end();
    }
  });
});
