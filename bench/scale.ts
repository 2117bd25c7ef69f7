/**
 * `npm run bench:scale`: what a second instance of every process buys, on this machine. For each
 * instance count (default 1, then 2), every process (API, outbox, bridge, worker, loyalty,
 * analytics) runs that many times as real processes, as `npm run up -- --scale` runs them, on a
 * database, exchange, queues and task queue of the run's own; a closed loop of `--concurrency`
 * clients posts orders round-robin to the APIs and waits for each to complete. Reports orders/s and
 * latency per instance count. Everything it made is removed at the end.
 *
 * The Temporal server is whatever TEMPORAL_ADDRESS names (the dev server by default).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import amqplib from 'amqplib';
import { Command } from 'commander';
import { ensureLocalKeyPair, signLocalToken } from '../lib/auth-keys.js';
import { amqpUser } from '../lib/amqp/connection.js';
import { loadConfig } from '../lib/config.js';
import { deleteTopology } from '../test/helpers/amqp.js';
import { startInstances, stopAll, waitReady, type Instance } from '../test/helpers/processes.js';
import { createBenchDatabase, dropBenchDatabase, withDatabase, type StackNames } from './lib/stack.js';

const program = new Command('bench:scale')
  .option('--instances <list>', 'instance counts to compare', '1,2')
  .option('--orders <n>', 'measured orders per instance count', '160')
  .option('--warmup <n>', 'unmeasured orders first', '24')
  .option('--concurrency <n>', 'orders in flight', '16')
  .parse();
const opts = program.opts<{ instances: string; orders: string; warmup: string; concurrency: string }>();

const PROCESSES = ['api', 'outbox', 'bridge', 'worker', 'loyalty', 'analytics'] as const;
const FINAL = new Set(['COMPLETED', 'OUT_OF_STOCK', 'PAYMENT_FAILED', 'CANCELLED']);

/** `Bearer <operator token>` signed with the run's own key pair (AUTH_LOCAL_KEY_DIR of its APIs). */
let authorization = '';

async function placeAndWait(api: Instance, i: number): Promise<number> {
  const started = performance.now();
  const res = await fetch(`http://127.0.0.1:${api.port}/orders`, {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/json' },
    body: JSON.stringify({
      customer_id: `BENCH-${i}`,
      email: `bench${i}@example.com`,
      items: [{ sku: 'TSHIRT-BLK-M', qty: 1 }],
    }),
  });
  if (res.status !== 202) throw new Error(`POST /orders answered ${res.status}: ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const res = await fetch(`http://127.0.0.1:${api.port}/orders/${id}`, { headers: { authorization } });
    const order = (await res.json()) as { status: string };
    if (FINAL.has(order.status)) return performance.now() - started;
  }
}

async function closedLoop(apis: Instance[], count: number, concurrency: number, offset: number) {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        latencies.push(await placeAndWait(apis[i % apis.length]!, offset + i));
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!);
  return { perSecond: count / seconds, p50: at(0.5), p95: at(0.95), seconds };
}

async function measure(n: number) {
  const config = loadConfig();
  const id = randomUUID().replaceAll('-', '').slice(0, 8);
  const database = `acme_bench_scale_${id}`;
  const names = {
    database,
    databaseUrl: withDatabase(config.DATABASE_URL, database),
    adminUrl: config.DATABASE_URL,
  } as StackNames;
  const exchange = `bench.${id}.events`;
  const queues = {
    BRIDGE_QUEUE: `bench.${id}.bridge`,
    LOYALTY_QUEUE: `bench.${id}.loyalty`,
    ANALYTICS_QUEUE: `bench.${id}.analytics`,
  };
  const logDir = mkdtempSync(path.join(os.tmpdir(), 'acme-bench-scale-'));
  await createBenchDatabase(names);
  const keyDir = path.join(logDir, 'auth');
  authorization = `Bearer ${await signLocalToken(await ensureLocalKeyPair(keyDir), config, {
    subject: 'bench-scale',
    role: 'operator',
  })}`;
  let instances: Instance[] = [];
  try {
    instances = await startInstances(
      Object.fromEntries(PROCESSES.map((p) => [p, n])),
      {
        DATABASE_URL: names.databaseUrl,
        AMQP_EXCHANGE: exchange,
        // Every instance logs in as the one AMQP_URL user, which is then the outbox's too.
        AMQP_TRUSTED_PUBLISHERS: amqpUser(config.AMQP_URL),
        ...queues,
        TEMPORAL_TASK_QUEUE: `bench-${id}-orders`,
        LOG_LEVEL: 'warn',
        AUTH_LOCAL_KEY_DIR: keyDir,
      },
      logDir,
    );
    await waitReady(instances, 180_000);
    const apis = instances.filter((i) => i.process === 'api');
    const concurrency = Number(opts.concurrency);
    await closedLoop(apis, Number(opts.warmup), concurrency, 0);
    return await closedLoop(apis, Number(opts.orders), concurrency, Number(opts.warmup));
  } finally {
    await stopAll(instances);
    const admin = await amqplib.connect(config.AMQP_URL);
    await deleteTopology(admin, exchange, Object.values(queues));
    await admin.close();
    await dropBenchDatabase(names);
    rmSync(logDir, { recursive: true, force: true });
  }
}

async function main() {
  const { TEMPORAL_ADDRESS } = loadConfig();
  console.log(
    `[bench:scale] ${opts.orders} orders per run (after ${opts.warmup} unmeasured), ${opts.concurrency} in flight, Temporal at ${TEMPORAL_ADDRESS}, ${os.cpus().length} cores`,
  );
  for (const n of opts.instances.split(',').map(Number)) {
    const r = await measure(n);
    const row = `${n} of each: ${r.perSecond.toFixed(1)} orders/s, p50 ${r.p50} ms, p95 ${r.p95} ms (${r.seconds.toFixed(1)} s)`;
    console.log(`[bench:scale] ${row}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
