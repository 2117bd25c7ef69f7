/**
 * Faults with real servers: RabbitMQ and PostgreSQL are restarted (not just disconnected) while
 * orders are in flight. The outbox publisher, the bridge and the worker must reconnect on their own,
 * and every order must still reach its end with every event published: nothing lost, nothing stuck.
 *
 * Needs the servers scripts/infra.sh runs on this machine (it restarts them with their own tools);
 * skipped when the environment points at servers elsewhere. Other clients of the servers (a running
 * `npm run up`, say) see the same short outage and must recover the same way.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/amqp.js';
import { startSystem, type TestSystem } from '../helpers/system.js';

const run = promisify(execFile);
const local = !process.env.DATABASE_URL && !process.env.AMQP_URL;
const TEMPORAL_PID_FILE = new URL('../../.data/temporal.pid', import.meta.url);
const localTemporal = !process.env.TEMPORAL_ADDRESS && existsSync(TEMPORAL_PID_FILE);
const INFRA = new URL('../../scripts/infra.sh', import.meta.url).pathname;

let system: TestSystem;
beforeAll(async () => {
  if (local || localTemporal) system = await startSystem();
});
afterAll(async () => {
  await system?.stop();
});

async function placeOrders(n: number, prefix: string): Promise<string[]> {
  const placed = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      system.placeOrder({
        customer_id: `${prefix}-${i}`,
        email: `${prefix.toLowerCase()}${i}@example.com`,
        items: [{ sku: 'TSHIRT-BLK-M', qty: 1 }],
      }),
    ),
  );
  expect(placed.map((p) => p.status)).toEqual(Array(n).fill(202));
  return placed.map((p) => p.body.id);
}

/** Every order COMPLETED and every one of its events published; reads tolerate a server coming back. */
async function expectAllCompletedAndPublished(ids: string[]): Promise<void> {
  await waitFor(
    async () => {
      try {
        const { rows } = await system.db.pool.query<{ n: number }>(
          `select count(*)::int as n from orders o
           where o.id = any($1::uuid[]) and o.status = 'COMPLETED'
             and not exists (select 1 from event_outbox e where e.order_id = o.id and e.status <> 'PUBLISHED')`,
          [ids],
        );
        return rows[0]!.n === ids.length;
      } catch {
        return false; // the database is still coming back
      }
    },
    {
      timeoutMs: 90_000,
      intervalMs: 250,
      what: `${ids.length} orders to complete with every event published`,
    },
  );
  const { rows } = await system.db.pool.query<{ type: string; n: number }>(
    `select type, count(*)::int as n from event_outbox where order_id = any($1::uuid[]) group by type order by type`,
    [ids],
  );
  // Exactly one of each event per order: retries during the outage wrote nothing twice.
  expect(rows).toEqual(
    ['inventory.reserved', 'order.completed', 'order.placed', 'payment.completed'].map((type) => ({
      type,
      n: ids.length,
    })),
  );
}

describe.skipIf(!local)('server restarts', () => {
  it('RabbitMQ restarted: orders placed while it is down complete once it is back', async () => {
    await run('rabbitmqctl', ['-q', 'stop_app']);
    let ids: string[];
    try {
      ids = await placeOrders(5, 'MQDOWN'); // the API needs only PostgreSQL: orders are accepted
      await new Promise((resolve) => setTimeout(resolve, 2000)); // publisher and bridge fail meanwhile
    } finally {
      await run('rabbitmqctl', ['-q', 'start_app']);
    }
    await expectAllCompletedAndPublished(ids);
  });

  it('PostgreSQL restarted with orders in flight: every order completes, no event is lost or doubled', async () => {
    const { stdout } = await run('pg_lsclusters', ['-h']);
    const [version, cluster] = stdout.trim().split('\n')[0]!.split(/\s+/);
    const ids = await placeOrders(5, 'PGRESTART');
    await run('pg_ctlcluster', ['--skip-systemctl-redirect', version!, cluster!, 'restart']);
    await expectAllCompletedAndPublished(ids);
  });
});

describe.skipIf(!localTemporal)('Temporal restart', () => {
  it('the dev server restarted: orders placed while it is down start and complete once it is back', async () => {
    const pid = Number(readFileSync(TEMPORAL_PID_FILE, 'utf8'));
    process.kill(pid, 'SIGTERM');
    await waitFor(
      () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true; // gone
        }
      },
      { timeoutMs: 30_000, what: 'the dev server to exit' },
    );
    let ids: string[];
    try {
      ids = await placeOrders(5, 'TEMPORALDOWN'); // accepted and published; the bridge waits
      await new Promise((resolve) => setTimeout(resolve, 3000));
    } finally {
      await run('bash', [INFRA, 'up']); // starts it again on its persisted database
    }
    await expectAllCompletedAndPublished(ids);
  });
});
