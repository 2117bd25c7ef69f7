/**
 * The real readiness probes `main.ts` hands to `createApp`. Each does the cheapest round trip that
 * proves its dependency answers; `GET /ready` adds the deadline.
 */
import type { Client } from '@temporalio/client';
import amqp from 'amqplib';
import { ping, type Pool } from '../db/pool.js';
import type { Probe } from './env.js';

export function postgresProbe(pool: Pool): Probe {
  return () => ping(pool);
}

/** Opens and closes a connection: the API publishes nothing itself (the outbox publisher does). */
export function rabbitmqProbe(url: string, timeoutMs: number): Probe {
  return async (signal) => {
    const connection = await amqp.connect(url, { timeout: timeoutMs });
    connection.on('error', () => {}); // reported through the promise below, never as a crash
    try {
      signal.throwIfAborted();
    } finally {
      await connection.close().catch(() => {});
    }
  };
}

export function temporalProbe(client: Client, timeoutMs: number): Probe {
  // On timeout the route aborts the signal, which cancels the call instead of leaving it running.
  return async (signal) => {
    await client.connection.withAbortSignal(signal, () =>
      client.connection.withDeadline(Date.now() + timeoutMs, () =>
        client.connection.workflowService.getSystemInfo({}),
      ),
    );
  };
}
