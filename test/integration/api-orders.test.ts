/**
 * The orders and products API against a real PostgreSQL (a fresh database for this file).
 * Each test uses its own customer id and products, so no test depends on another's rows.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../api/app.js';
import type { OrderView } from '../../api/schemas.js';
import { createLogger } from '../../lib/logger.js';
import type { EventEnvelope } from '../../lib/events.js';
import { asCaller, bearer, testAuth, type TestAuth } from '../helpers/auth.js';
import { createProduct, createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

let db: TestDatabase;
/** The API as an operator calls it; `post` places orders as the customer the body names. */
let app: App;
let auth: TestAuth;

beforeAll(async () => {
  db = await createTestDatabase();
  auth = await testAuth();
  const raw = createApp({
    pool: db.pool,
    logger: createLogger('api-test', 'silent'),
    workflows: {
      cancel: () => Promise.reject(new Error('not used here')),
      latestRun: () => Promise.reject(new Error('not used here')),
    },
    config: {
      TEMPORAL_UI_URL: 'http://localhost:8233/',
      TEMPORAL_NAMESPACE: 'default',
      IDEMPOTENCY_KEY_RETENTION_HOURS: 24,
      EVENT_MAX_AMOUNT: 10_000_000,
    },
    checks: { postgres: async () => void (await db.pool.query('select 1')) },
    authenticator: auth.authenticator,
  });
  app = asCaller(raw, await auth.operatorToken());
});
afterAll(async () => {
  await db?.drop();
});

const customer = () => `C-${randomUUID().slice(0, 8)}`;

async function post(
  body: { customer_id: string } & Record<string, unknown>,
  headers: Record<string, string> = {},
) {
  return app.request('/orders', {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      ...bearer(await auth.customerToken(body.customer_id)),
      ...headers,
    },
    body: JSON.stringify(body),
  });
}

async function countFor(customerId: string) {
  const { rows } = await db.pool.query<{ orders: number; items: number; events: number }>(
    `select (select count(*)::int from orders where customer_id = $1) as orders,
            (select count(*)::int from order_items i join orders o on o.id = i.order_id where o.customer_id = $1) as items,
            (select count(*)::int from event_outbox e join orders o on o.id = e.order_id where o.customer_id = $1) as events`,
    [customerId],
  );
  return rows[0]!;
}

describe('POST /orders', () => {
  it('stores the order, its lines and order.placed in one go, priced by the catalogue', async () => {
    const shirt = await createProduct(db.pool, { stock: 10, price: '19.99' });
    const sticker = await createProduct(db.pool, { stock: 10, price: '0.10' });
    const customerId = customer();
    const res = await post(
      {
        customer_id: customerId,
        email: 'buyer@example.com',
        items: [
          { sku: shirt, qty: 2 },
          { sku: sticker, qty: 3 },
        ],
      },
      { 'X-Correlation-Id': `corr-${customerId}` },
    );

    expect(res.status).toBe(202);
    const order = (await res.json()) as OrderView;
    expect(res.headers.get('location')).toBe(`/orders/${order.id}`);
    expect(res.headers.get('x-correlation-id')).toBe(`corr-${customerId}`);
    // 2 × 19.99 + 3 × 0.10 in floating point is 40.279999999999994.
    expect(order).toMatchObject({
      status: 'PENDING',
      customerId,
      email: 'buyer@example.com',
      total: '40.28',
      currency: 'USD',
      correlationId: `corr-${customerId}`,
      payment: null,
      notifications: [],
      workflow: { id: `order-${order.id}` },
    });
    // The Web UI link (an internal host, every customer's workflows) is an operator's alone.
    expect(order.workflow).not.toHaveProperty('url');
    const asOperator = (await (await app.request(`/orders/${order.id}`)).json()) as OrderView;
    expect(asOperator.workflow).toEqual({
      id: `order-${order.id}`,
      url: `http://localhost:8233/namespaces/default/workflows/order-${order.id}`,
    });
    expect(order.items).toEqual(
      [
        { sku: shirt, qty: 2, unitPrice: '19.99', lineTotal: '39.98' },
        { sku: sticker, qty: 3, unitPrice: '0.10', lineTotal: '0.30' },
      ].sort((a, b) => (a.sku < b.sku ? -1 : 1)),
    );
    expect(order.events).toEqual([
      {
        eventId: expect.any(String),
        type: 'order.placed',
        occurredAt: expect.any(String),
        published: false,
        publishedAt: null,
      },
    ]);

    const { rows: orders } = await db.pool.query(
      'select status, total::text, currency::text, correlation_id from orders where id = $1',
      [order.id],
    );
    expect(orders).toEqual([
      { status: 'PENDING', total: '40.28', currency: 'USD', correlation_id: `corr-${customerId}` },
    ]);
    // No Idempotency-Key, no key kept.
    const { rows: keys } = await db.pool.query('select 1 from idempotency_keys where order_id = $1', [
      order.id,
    ]);
    expect(keys).toEqual([]);
    const { rows: outbox } = await db.pool.query<{
      type: string;
      payload: EventEnvelope<'order.placed'>;
      headers: unknown;
    }>('select type, payload, headers from event_outbox where order_id = $1', [order.id]);
    expect(outbox).toHaveLength(1);
    expect(outbox[0]!.type).toBe('order.placed');
    expect(outbox[0]!.headers).toEqual({ correlationId: `corr-${customerId}` });
    expect(outbox[0]!.payload).toMatchObject({
      id: order.events[0]!.eventId,
      type: 'order.placed',
      version: 1,
      orderId: order.id,
      correlationId: `corr-${customerId}`,
      // When the order was made, as the view shows it.
      occurredAt: order.createdAt,
      data: { customerId, email: 'buyer@example.com', total: '40.28', currency: 'USD' },
    });
    expect(order.events[0]!.occurredAt).toBe(order.createdAt);
    expect(outbox[0]!.payload.data.items).toEqual([
      { sku: shirt, qty: 2, unitPrice: '19.99' },
      { sku: sticker, qty: 3, unitPrice: '0.10' },
    ]);
  });

  it('generates a correlation id when none (or an unusable one) is sent', async () => {
    const res = await post(
      { customer_id: customer(), email: 'a@example.com', items: [{ sku: 'MUG-WHT', qty: 1 }] },
      { 'X-Correlation-Id': 'has spaces' },
    );
    expect(res.status).toBe(202);
    const header = res.headers.get('x-correlation-id');
    expect(header).toMatch(/^[0-9a-f-]{36}$/);
    expect(((await res.json()) as OrderView).correlationId).toBe(header);
  });

  it('refuses an unknown SKU with 422 naming the item, and writes nothing', async () => {
    const customerId = customer();
    const res = await post({
      customer_id: customerId,
      email: 'a@example.com',
      items: [
        { sku: 'MUG-WHT', qty: 1 },
        { sku: 'NO-SUCH-SKU', qty: 1 },
      ],
    });
    expect(res.status).toBe(422);
    expect(await res.json()).toEqual({
      error: {
        code: 'unknown_sku',
        message: expect.any(String),
        fields: [{ path: 'items[1].sku', message: 'unknown SKU "NO-SUCH-SKU"' }],
      },
    });
    expect(await countFor(customerId)).toEqual({ orders: 0, items: 0, events: 0 });
  });

  it('refuses a total above EVENT_MAX_AMOUNT with 422, so no customer can make the subscribers dead-letter an order', async () => {
    const customerId = customer();
    const pricey = await createProduct(db.pool, { stock: 1000, price: '20000.00' });
    const res = await post({
      customer_id: customerId,
      email: 'a@example.com',
      items: [{ sku: pricey, qty: 501 }],
    });
    expect(res.status).toBe(422);
    expect(await res.json()).toEqual({
      error: {
        code: 'total_too_large',
        message: expect.any(String),
        fields: [{ path: 'items', message: 'total 10020000.00 is above the limit 10000000' }],
      },
    });
    expect(await countFor(customerId)).toEqual({ orders: 0, items: 0, events: 0 });
    // At the limit it is taken.
    expect(
      (await post({ customer_id: customerId, email: 'a@example.com', items: [{ sku: pricey, qty: 500 }] }))
        .status,
    ).toBe(202);
  });

  it.each([
    ['missing email', { items: [{ sku: 'MUG-WHT', qty: 1 }] }, 'email'],
    ['bad email', { email: 'x@', items: [{ sku: 'MUG-WHT', qty: 1 }] }, 'email'],
    ['zero qty', { email: 'a@example.com', items: [{ sku: 'MUG-WHT', qty: 0 }] }, 'items[0].qty'],
    ['qty too large', { email: 'a@example.com', items: [{ sku: 'MUG-WHT', qty: 100_000 }] }, 'items[0].qty'],
    ['no items', { email: 'a@example.com', items: [] }, 'items'],
    [
      'duplicate sku',
      {
        email: 'a@example.com',
        items: [
          { sku: 'MUG-WHT', qty: 1 },
          { sku: 'MUG-WHT', qty: 1 },
        ],
      },
      'items[1].sku',
    ],
    [
      'client-sent price',
      { email: 'a@example.com', items: [{ sku: 'MUG-WHT', qty: 1, unit_price: '0.01' }] },
      'items[0].unit_price',
    ],
    ['extra field', { email: 'a@example.com', items: [{ sku: 'MUG-WHT', qty: 1 }], total: '0.01' }, 'total'],
  ])('400 for %s, naming %s, and writes nothing', async (_name, partial, path) => {
    const customerId = customer();
    const res = await post({ customer_id: customerId, ...partial });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; fields: Array<{ path: string }> } };
    expect(body.error.code).toBe('validation_failed');
    expect(body.error.fields.map((f) => f.path)).toContain(path);
    expect(await countFor(customerId)).toEqual({ orders: 0, items: 0, events: 0 });
  });
});

describe('Idempotency-Key', () => {
  const body = (customerId: string, qty = 1) => ({
    customer_id: customerId,
    email: 'idem@example.com',
    items: [{ sku: 'HOODIE-NVY-L', qty }],
  });

  it('returns the same order for a retry with the same body', async () => {
    const customerId = customer();
    const key = `key-${randomUUID()}`;
    const first = await post(body(customerId), { 'Idempotency-Key': key });
    expect(first.status).toBe(202);
    const firstOrder = (await first.json()) as OrderView;

    // Same request, different JSON spelling (key order): still the same request.
    const second = await app.request('/orders', {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json; charset=utf-8',
        'Idempotency-Key': key,
        ...bearer(await auth.customerToken(customerId)),
      },
      body: JSON.stringify({
        items: [{ qty: 1, sku: 'HOODIE-NVY-L' }],
        email: 'idem@example.com',
        customer_id: customerId,
      }),
    });
    expect(second.status).toBe(200);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(second.headers.get('location')).toBe(`/orders/${firstOrder.id}`);
    expect(((await second.json()) as OrderView).id).toBe(firstOrder.id);
    expect(await countFor(customerId)).toEqual({ orders: 1, items: 1, events: 1 });
  });

  it('refuses the same key with another body (409) and writes nothing more', async () => {
    const customerId = customer();
    const key = `key-${randomUUID()}`;
    expect((await post(body(customerId, 1), { 'Idempotency-Key': key })).status).toBe(202);
    const res = await post(body(customerId, 2), { 'Idempotency-Key': key });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('idempotency_key_reused');
    expect(await countFor(customerId)).toEqual({ orders: 1, items: 1, events: 1 });
  });

  it('makes one order when retries race', async () => {
    const customerId = customer();
    const key = `key-${randomUUID()}`;
    const responses = await Promise.all(
      Array.from({ length: 6 }, () => post(body(customerId), { 'Idempotency-Key': key })),
    );
    const statuses = responses.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 202)).toHaveLength(1);
    expect(statuses.filter((s) => s === 200)).toHaveLength(5);
    const ids = await Promise.all(responses.map(async (r) => ((await r.json()) as OrderView).id));
    expect(new Set(ids).size).toBe(1);
    expect(await countFor(customerId)).toEqual({ orders: 1, items: 1, events: 1 });
  });

  it('a key claimed between its read and its write: the late request writes nothing, answers with the order that won', async () => {
    const customerId = customer();
    const key = `key-${randomUUID()}`;
    // The winner: an order and its claim on the key, written but not committed yet.
    const winner = await db.pool.connect();
    const winnerId = randomUUID();
    try {
      await winner.query('begin');
      await winner.query(
        `insert into orders (id, customer_id, email, status, total, currency, correlation_id)
         values ($1::uuid, $2, 'idem@example.com', 'PENDING', 1, 'USD', 'race')`,
        [winnerId, customerId],
      );
      await winner.query(
        `insert into idempotency_keys (customer_id, key, request_hash, order_id) values ($1, $2, 'winner', $3::uuid)`,
        [customerId, key, winnerId],
      );
      // The late request reads no key (the claim is not committed) and waits on it in its write.
      const late = post(body(customerId), { 'Idempotency-Key': key });
      await waitFor(
        async () =>
          (
            await db.pool.query(
              `select 1 from pg_stat_activity
                where datname = current_database() and wait_event_type = 'Lock' and query like '%claimed%'`,
            )
          ).rowCount === 1,
        { what: 'the late request to wait on the uncommitted key' },
      );
      await winner.query('commit');

      const res = await late;
      expect(res.status).toBe(409); // the winner's request hash differs from this body's
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('idempotency_key_reused');
    } finally {
      await winner.query('rollback').catch(() => {});
      winner.release();
    }
    // Only the winner's order: the late request's order, lines and event were never written.
    expect(await countFor(customerId)).toEqual({ orders: 1, items: 0, events: 0 });
    const { rows } = await db.pool.query('select order_id::text from idempotency_keys where key = $1', [key]);
    expect(rows).toEqual([{ order_id: winnerId }]);
  });

  it('takes over a key past its retention that the retention job has not pruned yet', async () => {
    const customerId = customer();
    const key = `key-${randomUUID()}`;
    const first = (await (await post(body(customerId), { 'Idempotency-Key': key })).json()) as OrderView;
    await db.pool.query(
      `update idempotency_keys set created_at = now() - interval '25 hours' where key = $1`,
      [key],
    );

    const again = await post(body(customerId), { 'Idempotency-Key': key });
    expect(again.status).toBe(202);
    const second = (await again.json()) as OrderView;
    expect(second.id).not.toBe(first.id);
    const { rows } = await db.pool.query('select order_id::text from idempotency_keys where key = $1', [key]);
    expect(rows).toEqual([{ order_id: second.id }]);
    expect(await countFor(customerId)).toEqual({ orders: 2, items: 2, events: 2 });
  });
});

describe('GET /orders/:id', () => {
  it('shows payment, notifications and the event timeline the saga recorded', async () => {
    const customerId = customer();
    const placed = (await (
      await post({ customer_id: customerId, email: 'view@example.com', items: [{ sku: 'MUG-WHT', qty: 2 }] })
    ).json()) as OrderView;
    await db.pool.query(`update orders set status = 'PAID' where id = $1`, [placed.id]);
    await db.pool.query(
      `insert into payments (order_id, amount, currency, status, reference, charge_key)
       values ($1::uuid, 19.00, 'USD', 'CAPTURED', 'PAY-1', $1::text)`,
      [placed.id],
    );
    await db.pool.query(
      `insert into notifications (order_id, kind, recipient, subject, body)
       values ($1, 'order_confirmed', 'view@example.com', 'Your order', 'Thanks')`,
      [placed.id],
    );
    await db.pool.query(
      `update event_outbox set status = 'PUBLISHED', published_at = now() where order_id = $1`,
      [placed.id],
    );

    const res = await app.request(`/orders/${placed.id}`);
    expect(res.status).toBe(200);
    const order = (await res.json()) as OrderView;
    expect(order).toMatchObject({
      id: placed.id,
      status: 'PAID',
      run: 1,
      total: '19.00',
      items: [{ sku: 'MUG-WHT', qty: 2, unitPrice: '9.50', lineTotal: '19.00' }],
      payment: {
        run: 1,
        status: 'CAPTURED',
        amount: '19.00',
        currency: 'USD',
        reference: 'PAY-1',
        failureReason: null,
      },
      notifications: [{ kind: 'order_confirmed', recipient: 'view@example.com', subject: 'Your order' }],
      events: [{ type: 'order.placed', published: true, publishedAt: expect.stringMatching(/Z$/) }],
    });
    expect(new Date(order.createdAt).toISOString()).toBe(order.createdAt);
  });

  it('is 404 for an unknown order and 400 for a malformed id', async () => {
    const missing = await app.request(`/orders/${randomUUID()}`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('not_found');
    expect((await app.request('/orders/123')).status).toBe(400);
  });
});

describe('GET /orders', () => {
  interface Page {
    items: Array<{
      id: string;
      customerId: string;
      status: string;
      statusReason: string | null;
      createdAt: string;
    }>;
    nextCursor: string | null;
  }

  async function allPages(query: string): Promise<Page[]> {
    const pages: Page[] = [];
    let cursor: string | null = null;
    do {
      const res = await app.request(`/orders?${query}${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as Page;
      pages.push(page);
      cursor = page.nextCursor;
    } while (cursor && pages.length < 20);
    return pages;
  }

  it('pages newest first, every order exactly once, even when timestamps tie', async () => {
    const customerId = customer();
    // Seven orders, three of them sharing one created_at to the microsecond: the id breaks the tie.
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const id = randomUUID();
      ids.push(id);
      await db.pool.query(
        `insert into orders (id, customer_id, email, total, currency, correlation_id, created_at)
         values ($1, $2, 'list@example.com', 1, 'USD', 'c', $3::timestamptz)`,
        [id, customerId, i < 3 ? '2025-01-01T00:00:00.123456Z' : `2025-01-0${i}T00:00:00.000001Z`],
      );
    }
    const pages = await allPages(`customer_id=${customerId}&limit=2`);
    expect(pages.map((p) => p.items.length)).toEqual([2, 2, 2, 1]);
    expect(pages.at(-1)!.nextCursor).toBeNull();
    const seen = pages.flatMap((p) => p.items);
    expect(new Set(seen.map((o) => o.id))).toEqual(new Set(ids));
    const keys = seen.map((o) => [o.createdAt, o.id] as const);
    const sorted = [...keys].sort((a, b) => (a[0] === b[0] ? (a[1] < b[1] ? 1 : -1) : a[0] < b[0] ? 1 : -1));
    expect(keys).toEqual(sorted);
  });

  it('filters by status and customer', async () => {
    const customerId = customer();
    for (const [status, reason] of [
      ['PENDING', null],
      ['PAYMENT_FAILED', 'payment not captured within 600000 ms'],
      ['PAYMENT_FAILED', 'card declined'],
    ]) {
      await db.pool.query(
        `insert into orders (id, customer_id, email, status, status_reason, total, currency, correlation_id)
         values ($1, $2, 'f@example.com', $3, $4, 1, 'USD', 'c')`,
        [randomUUID(), customerId, status, reason],
      );
    }
    const [page] = await allPages(`customer_id=${customerId}&status=PAYMENT_FAILED`);
    expect(page!.items.map((o) => o.status)).toEqual(['PAYMENT_FAILED', 'PAYMENT_FAILED']);
    // Why each failed, on the list itself: an operator reading failed orders needs no GET per order.
    expect(page!.items.map((o) => o.statusReason).sort()).toEqual([
      'card declined',
      'payment not captured within 600000 ms',
    ]);
    expect(page!.items.every((o) => o.customerId === customerId)).toBe(true);
    expect(page!.nextCursor).toBeNull();
  });

  it('rejects bad parameters', async () => {
    expect((await app.request('/orders?status=LOST')).status).toBe(400);
    expect((await app.request('/orders?limit=0')).status).toBe(400);
    expect((await app.request('/orders?cursor=eyJ0IjoxfQ')).status).toBe(400);
    // Two valid statuses: the problem is the repetition, and the answer says so.
    const twice = await app.request('/orders?status=COMPLETED&status=CANCELLED');
    expect(twice.status).toBe(400);
    expect(await twice.json()).toMatchObject({
      error: { fields: [{ path: 'status', message: 'must be given once (one status per request)' }] },
    });
  });
});

describe('products', () => {
  it('lists the catalogue and shows one product', async () => {
    const sku = await createProduct(db.pool, { stock: 7, price: '12.30' });
    const list = await app.request('/products');
    expect(list.status).toBe(200);
    const { items } = (await list.json()) as { items: Array<{ sku: string }> };
    expect(items).toContainEqual({
      sku: 'TSHIRT-BLK-M',
      name: 'T-shirt, black, M',
      price: '19.99',
      currency: 'USD',
      stockQty: expect.any(Number),
    });
    expect(items.map((p) => p.sku)).toContain(sku);

    const one = await app.request(`/products/${sku}`);
    expect(one.status).toBe(200);
    expect(await one.json()).toEqual({
      sku,
      name: `Test product ${sku}`,
      price: '12.30',
      currency: 'USD',
      stockQty: 7,
    });
    const missing = await app.request('/products/NO-SUCH-SKU');
    expect(missing.status).toBe(404);
  });
});

describe('readiness with a real database', () => {
  it('is ready when PostgreSQL answers', async () => {
    const res = await app.request('/ready');
    expect(res.status).toBe(200);
  });
});
