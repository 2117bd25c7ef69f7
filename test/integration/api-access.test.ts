/**
 * Who may do what, against a real PostgreSQL: customer A and customer B each see, list and cancel
 * only their own orders, by every route; operators see all and alone retry; cursors stay with their
 * caller; Idempotency-Keys are each customer's own; writes are rate-limited per caller; an exhausted
 * pool is a 503 with Retry-After; e-mail addresses stay out of info-level logs.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../api/app.js';
import type { AppDeps } from '../../api/env.js';
import type { OrderWorkflows } from '../../api/order-workflows.js';
import { createPool } from '../../db/pool.js';
import { captureLogger } from '../helpers/amqp.js';
import { bearer, testAuth, type TestAuth } from '../helpers/auth.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
let auth: TestAuth;
let app: App;
const log = captureLogger('info');

const workflows: OrderWorkflows = {
  // No saga in this file: a cancel finds none running and cancels in the database.
  cancel: async () => ({ kind: 'not_running' }),
  latestRun: async () => ({ kind: 'none' }),
};

function build(overrides: Partial<AppDeps> = {}): App {
  return createApp({
    pool: db.pool,
    logger: log.logger,
    workflows,
    config: {
      TEMPORAL_UI_URL: 'http://localhost:8233',
      TEMPORAL_NAMESPACE: 'default',
      IDEMPOTENCY_KEY_RETENTION_HOURS: 24,
      EVENT_MAX_AMOUNT: 10_000_000,
    },
    checks: {},
    authenticator: auth.authenticator,
    ...overrides,
  });
}

beforeAll(async () => {
  db = await createTestDatabase();
  auth = await testAuth();
  app = build();
});
afterAll(async () => {
  await db?.drop();
});

const newCustomer = () => `C-${randomUUID().slice(0, 8)}`;

async function call(
  token: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  on: App = app,
) {
  const res = await on.request(path, {
    method,
    headers: {
      ...bearer(token),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return {
    status: res.status,
    headers: res.headers,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers of many shapes, read loosely
    body: (await res.json()) as Record<string, any>,
  };
}

const orderBody = (extra: Record<string, unknown> = {}) => ({
  email: 'someone@example.com',
  items: [{ sku: 'MUG-WHT', qty: 1 }],
  ...extra,
});

async function twoCustomers() {
  const a = { id: newCustomer(), token: '' };
  const b = { id: newCustomer(), token: '' };
  a.token = await auth.customerToken(a.id);
  b.token = await auth.customerToken(b.id);
  return { a, b, ops: await auth.operatorToken() };
}

async function place(
  token: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
) {
  const res = await call(token, 'POST', '/orders', orderBody(extra), headers);
  expect([200, 202]).toContain(res.status);
  return res.body.id as string;
}

describe('customer A and customer B', () => {
  it("A cannot see, list or cancel B's order by any route, nor order as B; the operator can", async () => {
    const { a, b, ops } = await twoCustomers();
    const orderA = await place(a.token);
    const orderB = await place(b.token, { customer_id: b.id }); // naming oneself is fine

    // Read
    expect((await call(a.token, 'GET', `/orders/${orderA}`)).status).toBe(200);
    const foreign = await call(a.token, 'GET', `/orders/${orderB}`);
    expect(foreign).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    // The same answer as for an order that does not exist: nothing tells the two apart.
    const missing = await call(a.token, 'GET', `/orders/${randomUUID()}`);
    expect(missing.status).toBe(404);
    expect(Object.keys(foreign.body.error).sort()).toEqual(Object.keys(missing.body.error).sort());
    expect((await call(ops, 'GET', `/orders/${orderB}`)).body.customerId).toBe(b.id);

    // List: a customer's list is its own, whatever it asks for.
    const listA = await call(a.token, 'GET', '/orders?limit=100');
    expect(listA.body.items.map((o: { id: string }) => o.id)).toEqual([orderA]);
    expect((await call(a.token, 'GET', `/orders?customer_id=${a.id}`)).body.items).toHaveLength(1);
    expect((await call(a.token, 'GET', `/orders?customer_id=${b.id}`)).status).toBe(403);
    const listOps = await call(ops, 'GET', '/orders?limit=100');
    expect(listOps.body.items.map((o: { id: string }) => o.id)).toEqual(
      expect.arrayContaining([orderA, orderB]),
    );

    // Order as B
    const asB = await call(a.token, 'POST', '/orders', orderBody({ customer_id: b.id }));
    expect(asB).toMatchObject({ status: 403, body: { error: { code: 'forbidden' } } });

    // Cancel and retry
    expect((await call(a.token, 'POST', `/orders/${orderB}/cancel`, { code: 'other' })).status).toBe(404);
    expect((await call(a.token, 'POST', `/orders/${orderB}/retry`, {})).status).toBe(403);
    expect((await call(a.token, 'POST', `/orders/${orderA}/retry`, {})).status).toBe(403);
    // Refused before anything is validated: a customer learns nothing of what the route accepts.
    expect((await call(a.token, 'POST', '/orders/not-a-uuid/retry', {})).status).toBe(403);
    expect((await call(a.token, 'POST', `/orders/${orderA}/retry`, { reason: 5 })).status).toBe(403);
    const { rows } = await db.pool.query('select status from orders where id = $1', [orderB]);
    expect(rows).toEqual([{ status: 'PENDING' }]);

    // Their own cancel works; the operator may cancel anyone's.
    expect((await call(a.token, 'POST', `/orders/${orderA}/cancel`, { code: 'changed_mind' })).status).toBe(
      200,
    );
    expect((await call(ops, 'POST', `/orders/${orderB}/cancel`, { code: 'suspected_fraud' })).status).toBe(
      200,
    );
    // An operator places an order for a named customer.
    const forB = await call(ops, 'POST', '/orders', orderBody({ customer_id: b.id }));
    expect(forB).toMatchObject({ status: 202, body: { customerId: b.id } });
  });

  it('a customer cannot cancel with the staff codes, whose wording speaks for the shop; an operator can', async () => {
    const { a, ops } = await twoCustomers();
    const mine = await place(a.token);
    for (const code of ['suspected_fraud', 'payment_issue']) {
      const refused = await call(a.token, 'POST', `/orders/${mine}/cancel`, { code });
      expect(refused).toMatchObject({
        status: 403,
        body: { error: { code: 'forbidden', fields: [{ path: 'code' }] } },
      });
    }
    // Refused before anything was recorded: no cancel mark, no code, the order untouched.
    const { rows } = await db.pool.query(
      'select status, cancel_requested_at, cancel_code from orders where id = $1',
      [mine],
    );
    expect(rows).toEqual([{ status: 'PENDING', cancel_requested_at: null, cancel_code: null }]);
    // The customer's own codes still work, and the operator may use a staff code on the same kind of order.
    expect((await call(a.token, 'POST', `/orders/${mine}/cancel`, { code: 'duplicate_order' })).status).toBe(
      200,
    );
    const other = await place(a.token);
    const byOps = await call(ops, 'POST', `/orders/${other}/cancel`, { code: 'suspected_fraud' });
    expect(byOps).toMatchObject({ status: 200, body: { status: 'CANCELLED' } });
  });

  it('cursors page on for their own caller and filter only', async () => {
    const { a, b, ops } = await twoCustomers();
    for (let i = 0; i < 3; i++) await place(a.token);
    await place(b.token);
    const first = await call(a.token, 'GET', '/orders?limit=2');
    expect(first.body.items).toHaveLength(2);
    const cursor = first.body.nextCursor as string;
    const second = await call(a.token, 'GET', `/orders?limit=2&cursor=${cursor}`);
    expect(second.status).toBe(200);
    expect(second.body.items).toHaveLength(1);
    expect(second.body.nextCursor).toBeNull();

    for (const [token, query] of [
      [b.token, ''],
      [ops, ''],
      [a.token, '&status=PENDING'],
      [a.token, `&customer_id=${a.id}`],
    ] as const) {
      const res = await call(token, 'GET', `/orders?limit=2${query}&cursor=${cursor}`);
      expect(res).toMatchObject({ status: 400, body: { error: { fields: [{ path: 'cursor' }] } } });
    }
  });

  it('products need a token of any kind; analytics an operator', async () => {
    const { a, ops } = await twoCustomers();
    expect((await call(a.token, 'GET', '/products')).status).toBe(200);
    expect((await call(a.token, 'GET', '/analytics/summary')).status).toBe(403);
    expect((await call(a.token, 'GET', '/analytics/summary?from=yesterday')).status).toBe(403);
    expect((await call(ops, 'GET', '/analytics/summary')).status).toBe(200);
    expect((await app.request('/products')).status).toBe(401);
  });

  it('the probes, /metrics, /openapi.json and /docs stay open', async () => {
    for (const path of ['/health', '/ready', '/metrics', '/openapi.json', '/docs']) {
      expect((await app.request(path)).status, path).toBe(200);
    }
  });
});

describe('Idempotency-Key, per customer', () => {
  it('the same key from two customers makes two independent orders', async () => {
    const { a, b } = await twoCustomers();
    const key = `checkout-${randomUUID()}`;
    const orderA = await call(a.token, 'POST', '/orders', orderBody(), { 'Idempotency-Key': key });
    const orderB = await call(b.token, 'POST', '/orders', orderBody(), { 'Idempotency-Key': key });
    expect([orderA.status, orderB.status]).toEqual([202, 202]);
    expect(orderA.body.id).not.toBe(orderB.body.id);
    expect(orderB.body.customerId).toBe(b.id);

    // Each replays its own; a changed body is a 409 that names no order and no customer.
    const replayA = await call(a.token, 'POST', '/orders', orderBody(), { 'Idempotency-Key': key });
    expect(replayA).toMatchObject({ status: 200, body: { id: orderA.body.id } });
    const conflict = await call(b.token, 'POST', '/orders', orderBody({ email: 'other@example.com' }), {
      'Idempotency-Key': key,
    });
    expect(conflict.status).toBe(409);
    expect(conflict.body).toEqual({
      error: { code: 'idempotency_key_reused', message: expect.any(String) },
    });
    const text = JSON.stringify(conflict.body);
    for (const secret of [orderA.body.id, orderB.body.id, a.id, b.id]) expect(text).not.toContain(secret);
  });

  it("an operator and the customer share the customer's keys: the same request replays", async () => {
    const { a, ops } = await twoCustomers();
    const key = `k-${randomUUID()}`;
    const first = await call(a.token, 'POST', '/orders', orderBody(), { 'Idempotency-Key': key });
    const again = await call(ops, 'POST', '/orders', orderBody({ customer_id: a.id }), {
      'Idempotency-Key': key,
    });
    expect(again).toMatchObject({ status: 200, body: { id: first.body.id } });
  });

  it('a key older than the retention is free again (pruned or not)', async () => {
    const { a } = await twoCustomers();
    const key = `k-${randomUUID()}`;
    const first = await call(a.token, 'POST', '/orders', orderBody(), { 'Idempotency-Key': key });
    await db.pool.query(
      `update idempotency_keys set created_at = now() - interval '25 hours' where customer_id = $1 and key = $2`,
      [a.id, key],
    );
    const later = await call(a.token, 'POST', '/orders', orderBody({ email: 'new@example.com' }), {
      'Idempotency-Key': key,
    });
    expect(later.status).toBe(202);
    expect(later.body.id).not.toBe(first.body.id);
    const { rows } = await db.pool.query(
      'select order_id::text from idempotency_keys where customer_id = $1 and key = $2',
      [a.id, key],
    );
    expect(rows).toEqual([{ order_id: later.body.id }]);
  });
});

describe('limits', () => {
  it('rate-limits writes per caller with 429 + Retry-After; reads and other callers go on', async () => {
    const limited = build({ rateLimit: { writes: 3, windowMs: 60_000 } });
    const { a, b } = await twoCustomers();
    for (let i = 0; i < 3; i++) {
      expect((await call(a.token, 'POST', '/orders', orderBody(), {}, limited)).status).toBe(202);
    }
    const refused = await call(a.token, 'POST', '/orders', orderBody(), {}, limited);
    expect(refused.status).toBe(429);
    expect(refused.body).toEqual({ error: { code: 'rate_limited', message: expect.any(String) } });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(60);
    // A cancel is a write too.
    expect((await call(a.token, 'POST', `/orders/${randomUUID()}/cancel`, {}, {}, limited)).status).toBe(429);
    expect((await call(a.token, 'GET', '/orders', undefined, {}, limited)).status).toBe(200);
    expect((await call(b.token, 'POST', '/orders', orderBody(), {}, limited)).status).toBe(202);
    const { rows } = await db.pool.query('select count(*)::int as n from orders where customer_id = $1', [
      a.id,
    ]);
    expect(rows[0].n).toBe(3);
  });

  it('the default limit lets a benchmark-sized burst from one caller through', async () => {
    const { a } = await twoCustomers();
    const fresh = build();
    // 300 writes at once from one token (the benchmark's caller places ~300 orders/s).
    const answers = await Promise.all(
      Array.from({ length: 300 }, () => call(a.token, 'GET', '/products', undefined, {}, fresh)),
    );
    expect(answers.every((r) => r.status === 200)).toBe(true);
    const writes = await Promise.all(
      Array.from({ length: 300 }, () =>
        call(a.token, 'POST', `/orders/${randomUUID()}/cancel`, undefined, {}, fresh).then((r) => r.status),
      ),
    );
    expect(writes.filter((s) => s === 429)).toHaveLength(0);
  });

  it('an exhausted database pool answers 503 with Retry-After, not 500', async () => {
    const pool = createPool(db.url, 1, 'acme-test-exhausted', { acquireTimeoutMs: 200 });
    const held = await pool.connect();
    try {
      const starved = build({ pool });
      const { a } = await twoCustomers();
      for (const [method, path, body] of [
        ['POST', '/orders', orderBody()],
        ['GET', '/orders', undefined],
        ['GET', `/orders/${randomUUID()}`, undefined],
      ] as const) {
        const res = await call(a.token, method, path, body, {}, starved);
        expect(res.status, `${method} ${path}`).toBe(503);
        expect(res.body.error.code).toBe('unavailable');
        expect(res.headers.get('retry-after')).toBe('5');
      }
    } finally {
      held.release();
      await pool.end();
    }
  });
});

describe('personal data in logs', () => {
  it('no e-mail address is logged at info level when orders are placed and cancelled', async () => {
    const { a } = await twoCustomers();
    const email = `private-${randomUUID().slice(0, 6)}@example.com`;
    const id = await place(a.token, { email });
    await call(a.token, 'POST', `/orders/${id}/cancel`, {
      code: 'changed_mind',
      note: `mail me at ${email}`,
    });
    const logged = log.lines.filter((line) => (line.level as number) >= 30);
    expect(logged.length).toBeGreaterThan(0);
    expect(JSON.stringify(logged)).not.toContain(email);
  });
});
