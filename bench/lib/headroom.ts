/**
 * Headroom: how far the pieces in front of the saga are from being the limit.
 *
 * - outbox drain: N `order.placed`-like rows inserted into event_outbox in one transaction, with only
 *   the outbox publisher running; rate = N / (last published_at − commit), both by the database clock.
 * - API ingest: autocannon POSTing orders to the API alone (nothing drains the outbox meanwhile).
 * - PostgreSQL's own rate for the API's order placement: pgbench with a script that runs its two
 *   statements (priceLines' select; insertOrder's one write of the key, order, lines and event).
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import autocannon from 'autocannon';
import pg from 'pg';
import { readStat } from './procfs.js';
import { isoText } from '../../db/timestamps.js';

export const SKUS = ['HOODIE-NVY-L', 'MUG-WHT', 'TSHIRT-BLK-M', 'TSHIRT-GRY-S'];

/** The order body every bench client posts (one line, qty 1; the SKU rotates over the catalogue). */
export function orderBody(i: number): string {
  return JSON.stringify({
    customer_id: `BENCH-${i % 1000}`,
    email: `bench${i % 1000}@example.com`,
    items: [{ sku: SKUS[i % SKUS.length], qty: 1 }],
  });
}

// ----------------------------------------------------------------------------------- outbox drain

export interface DrainResult {
  rows: number;
  /** Commit of the backlog to the last row marked published, by the database clock. */
  seconds: number;
  perSecond: number;
  timedOut: boolean;
}

export async function outboxDrain(
  databaseUrl: string,
  rows: number,
  onProgress: (published: number) => void,
  timeoutMs = 600_000,
): Promise<DrainResult> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'acme-bench-drain' });
  await client.connect();
  try {
    const { rows: pending } = await client.query<{ n: string }>(
      "select count(*) as n from event_outbox where status = 'PENDING'",
    );
    if (Number(pending[0]!.n) > 0) throw new Error(`event_outbox has ${pending[0]!.n} pending rows already`);
    const { rows: mark } = await client.query<{ id: string }>(
      'select coalesce(max(id), 0)::text as id from event_outbox',
    );
    const after = mark[0]!.id;
    await client.query('begin');
    // Shaped like the API's order.placed envelope (lib/events.ts), one line per order.
    await client.query(
      `insert into event_outbox (event_id, type, order_id, payload, headers)
       select e.event_id, 'order.placed', e.order_id,
              jsonb_build_object(
                'id', e.event_id, 'type', 'order.placed', 'version', 1,
                'occurredAt', ${isoText('now()')},
                'orderId', e.order_id, 'correlationId', 'bench-drain-' || e.g,
                'data', jsonb_build_object(
                  'customerId', 'BENCH-' || (e.g % 1000), 'email', 'bench' || (e.g % 1000) || '@example.com',
                  'items', jsonb_build_array(jsonb_build_object('sku', 'MUG-WHT', 'qty', 1, 'unitPrice', '9.50')),
                  'total', '9.50', 'currency', 'USD')),
              jsonb_build_object('correlationId', 'bench-drain-' || e.g)
         from (select g, gen_random_uuid() as event_id, gen_random_uuid() as order_id
                 from generate_series(1, $1::int) as g) as e`,
      [rows],
    );
    await client.query('commit');
    const { rows: committed } = await client.query<{ at: Date }>('select clock_timestamp() as at');
    const deadline = Date.now() + timeoutMs;
    let published = 0;
    let timedOut = false;
    while (published < rows) {
      if (Date.now() > deadline) {
        timedOut = true;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
      const { rows: count } = await client.query<{ n: string }>(
        "select count(*) as n from event_outbox where id > $1::bigint and status = 'PUBLISHED'",
        [after],
      );
      published = Number(count[0]!.n);
      onProgress(published);
    }
    const { rows: last } = await client.query<{ at: Date | null }>(
      'select max(published_at) as at from event_outbox where id > $1::bigint',
      [after],
    );
    const seconds = ((last[0]!.at?.getTime() ?? Date.now()) - committed[0]!.at.getTime()) / 1000;
    return { rows: published, seconds: round2(seconds), perSecond: round2(published / seconds), timedOut };
  } finally {
    await client.end();
  }
}

// ------------------------------------------------------------------------------------- API ingest

export interface IngestResult {
  seconds: number;
  connections: number;
  accepted: number;
  perSecond: number;
  non2xx: number;
  errors: number;
  latencyMs: { p50: number; p99: number; max: number };
  /** Orders the database holds afterwards that this test added (a cross-check of `accepted`). */
  ordersInDatabase: number;
}

export async function apiIngest(
  port: number,
  databaseUrl: string,
  seconds: number,
  connections: number,
  /** `Bearer <operator token>`: one caller placing orders for many customers. */
  authorization: string,
): Promise<IngestResult> {
  const before = await countOrders(databaseUrl);
  let i = 0;
  const result = await autocannon({
    url: `http://127.0.0.1:${port}/orders`,
    method: 'POST',
    connections,
    duration: seconds,
    headers: { 'content-type': 'application/json', authorization },
    // A fresh body per request, like a real client (the same rotation as the load phases).
    setupClient: (client) => {
      client.setBody(orderBody(i++));
      client.on('response', () => client.setBody(orderBody(i++)));
    },
  });
  const after = await countOrders(databaseUrl);
  return {
    seconds: result.duration,
    connections,
    accepted: result['2xx'],
    perSecond: round2(result['2xx'] / result.duration),
    non2xx: result.non2xx,
    errors: result.errors,
    latencyMs: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max },
    ordersInDatabase: after - before,
  };
}

async function countOrders(databaseUrl: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'acme-bench-count' });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>('select count(*) as n from orders');
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

// ---------------------------------------------------------------------------------------- pgbench

/**
 * The API's order placement (db/order-placement.ts) as a pgbench script: the same two statements
 * over the extended protocol (-M extended, as node-postgres sends them), one line per order, no
 * Idempotency-Key (as autocannon's POSTs). Ids are made by gen_random_uuid() instead of in Node;
 * `occurredAt` is `now()::text`, as pgbench would read the colons of a to_char format as variables.
 * Keep it in step with priceLines and insertOrder.
 */
export const PGBENCH_SCRIPT = `\\set k random(1, ${SKUS.length})
SELECT i.ord::int AS ord, i.sku, i.qty, p.price::text AS unit_price, p.currency::text AS currency,
       (sum(p.price * i.qty) OVER ())::text AS total,
       k.order_id::text AS key_order_id, k.request_hash AS key_request_hash,
       gen_random_uuid()::text AS oid, gen_random_uuid()::text AS eid
  FROM unnest(ARRAY[(ARRAY[${SKUS.map((s) => `'${s}'`).join(', ')}])[:k]]::text[], ARRAY[1]::int[]) WITH ORDINALITY AS i (sku, qty, ord)
  LEFT JOIN products p ON p.sku = i.sku
  LEFT JOIN idempotency_keys k
         ON k.customer_id = 'BENCH-PGBENCH' AND k.key = NULL
        AND k.created_at > now() - make_interval(hours => 24)
 ORDER BY i.ord \\gset
WITH claimed AS (
  INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id)
  SELECT 'BENCH-PGBENCH', NULL::text, 'h', :oid::uuid WHERE NULL::text IS NOT NULL
  ON CONFLICT (customer_id, key) DO UPDATE
     SET request_hash = excluded.request_hash, order_id = excluded.order_id, created_at = now()
   WHERE idempotency_keys.created_at <= now() - make_interval(hours => 24)
  RETURNING 1
), placed AS (
  INSERT INTO orders (id, customer_id, email, status, total, currency, correlation_id)
  SELECT :oid::uuid, 'BENCH-PGBENCH', 'pgbench@example.com', 'PENDING', :total::numeric, :currency::text, 'pgbench'
   WHERE NULL::text IS NULL OR EXISTS (SELECT 1 FROM claimed)
  RETURNING id
), lines AS (
  INSERT INTO order_items (order_id, sku, qty, unit_price)
  SELECT placed.id, t.sku, t.qty, t.unit_price
    FROM placed, unnest(ARRAY[:sku::text]::text[], ARRAY[:qty::int]::int[], ARRAY[:unit_price::numeric]::numeric[]) AS t (sku, qty, unit_price)
)
INSERT INTO event_outbox (event_id, type, order_id, payload, headers)
SELECT :eid::uuid, 'order.placed', placed.id,
       jsonb_build_object('id', :eid::text, 'type', 'order.placed', 'version', 1,
         'occurredAt', now()::text,
         'orderId', :oid::text, 'correlationId', 'pgbench',
         'data', jsonb_build_object('customerId', 'BENCH-PGBENCH', 'email', 'pgbench@example.com',
           'items', jsonb_build_array(jsonb_build_object('sku', :sku::text, 'qty', 1, 'unitPrice', :unit_price::text)),
           'total', :total::text, 'currency', :currency::text)),
       '{"correlationId":"pgbench"}'::jsonb
  FROM placed;
`;

export function findPgbench(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(path.join(base, v, 'bin/pgbench')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return path.join(base, versions[0], 'bin/pgbench');
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (existsSync(path.join(dir, 'pgbench'))) return path.join(dir, 'pgbench');
  }
  return undefined;
}

export interface PgbenchResult {
  clients: number;
  seconds: number;
  transactions: number;
  perSecond: number;
  latencyMsAverage: number;
  /** CPU-seconds of the pgbench process itself (the client side). */
  clientCpuSeconds: number;
}

export async function runPgbench(
  pgbench: string,
  databaseUrl: string,
  workDir: string,
  seconds: number,
  clients: number,
): Promise<PgbenchResult> {
  const script = path.join(workDir, 'insert-order.pgbench.sql');
  writeFileSync(script, PGBENCH_SCRIPT);
  const url = new URL(databaseUrl);
  const args = [
    '-n', // no vacuum of pgbench's own tables (there are none)
    '-M',
    'extended',
    '-c',
    String(clients),
    '-j',
    String(Math.min(clients, 2)),
    '-T',
    String(seconds),
    '-f',
    script,
    '-h',
    url.hostname,
    '-p',
    url.port || '5432',
    '-U',
    decodeURIComponent(url.username),
    url.pathname.slice(1),
  ];
  // The pgbench process's CPU, from this process's reaped-children time around the run.
  const cpuBefore = readStat(process.pid)?.childCpu ?? 0;
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(pgbench, args, {
      env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`pgbench exit ${code}:\n${out}`)),
    );
  });
  const cpuAfter = readStat(process.pid)?.childCpu ?? 0;
  const num = (re: RegExp) => Number(re.exec(output)?.[1] ?? NaN);
  return {
    clients,
    seconds,
    transactions: num(/number of transactions actually processed: (\d+)/),
    perSecond: round2(num(/tps = ([\d.]+) \(without initial connection time\)/)),
    latencyMsAverage: num(/latency average = ([\d.]+) ms/),
    clientCpuSeconds: round2(cpuAfter - cpuBefore),
  };
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}
