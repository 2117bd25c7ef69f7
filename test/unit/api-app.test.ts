/**
 * The app without a database: everything that must be decided before any I/O (probes, docs,
 * content type, size, JSON syntax, validation, correlation ids, the 500 shape). The pool here
 * fails loudly if touched, so a refused request provably wrote nothing.
 */
import { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../api/app.js';
import { ApiError } from '../../api/errors.js';
import { createLogger } from '../../lib/logger.js';
import { asCaller, testAuth, type TestAuth } from '../helpers/auth.js';
import type { AppDeps, Probe } from '../../api/env.js';
import type { Pool } from '../../db/pool.js';

/** The process's own logger (lib/logger.ts), writing here: `lines` parsed, `raw` as written. */
function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      raw.push(chunk.toString());
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger('api', 'debug', stream), lines, raw };
}

const untouchablePool = {
  query: () => Promise.reject(new Error('secret-db-detail: relation "orders" is on fire')),
  connect: () => Promise.reject(new Error('secret-db-detail: no connections')),
} as unknown as Pool;

const up: Probe = async () => {};

let auth: TestAuth;
/** Every request here is an operator's (authentication itself: test/integration/hostile-http.test.ts). */
let operatorToken: string;
beforeAll(async () => {
  auth = await testAuth();
  operatorToken = await auth.operatorToken();
});

function build(overrides: Partial<AppDeps> = {}) {
  const { logger, lines, raw: rawLines } = captureLogger();
  const raw = createApp({
    pool: untouchablePool,
    logger,
    workflows: {
      cancel: () => Promise.reject(new Error('no Temporal in unit tests')),
      latestRun: () => Promise.reject(new Error('no Temporal in unit tests')),
    },
    config: {
      TEMPORAL_UI_URL: 'http://localhost:8233',
      TEMPORAL_NAMESPACE: 'default',
      IDEMPOTENCY_KEY_RETENTION_HOURS: 24,
      EVENT_MAX_AMOUNT: 10_000_000,
    },
    checks: { postgres: up, rabbitmq: up, temporal: up },
    authenticator: auth.authenticator,
    ...overrides,
  });
  return { app: asCaller(raw, operatorToken), lines, rawLines };
}

const postJson = (body: string, headers: Record<string, string> = {}) => ({
  method: 'POST',
  headers: { 'Content-Type': 'application/json', ...headers },
  body,
});

describe('probes', () => {
  it('GET /health is 200 without touching any dependency', async () => {
    const { app } = build({ checks: { postgres: () => Promise.reject(new Error('down')) } });
    const res = await app.request('/health');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('GET /ready is 200 when every probe answers', async () => {
    const { app } = build();
    const res = await app.request('/ready');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { status: string; checks: Record<string, { status: string }> };
    expect(body.status).toBe('ready');
    expect(Object.keys(body.checks).sort()).toEqual(['postgres', 'rabbitmq', 'temporal']);
  });

  it('GET /ready checks once for many callers: a flood costs the dependencies one probe each', async () => {
    let probed = 0;
    const counting: Probe = async () => {
      probed += 1;
      await new Promise((resolve) => setTimeout(resolve, 20));
    };
    const { app } = build({ checks: { postgres: counting } });
    const answers = await Promise.all(Array.from({ length: 50 }, () => app.request('/ready')));
    expect(answers.map((r) => r.status)).toEqual(Array(50).fill(200));
    expect((await app.request('/ready')).status).toBe(200); // just after: the same answer
    expect(probed).toBe(1);
  });

  it('GET /ready is 503 naming the failed and the hanging dependency, without their errors', async () => {
    let aborted = false;
    const hanging: Probe = (signal) =>
      new Promise(() => {
        signal.addEventListener('abort', () => (aborted = true));
      });
    const { app } = build({
      checks: {
        postgres: up,
        rabbitmq: () => Promise.reject(new Error('ECONNREFUSED 10.0.0.1')),
        temporal: hanging,
      },
      readyTimeoutMs: 50,
    });
    const res = await app.request('/ready');
    expect(res.status).toBe(503);
    const text = await res.text();
    expect(text).not.toContain('ECONNREFUSED');
    expect(JSON.parse(text)).toEqual({
      status: 'not_ready',
      checks: {
        postgres: { status: 'up', ms: expect.any(Number) },
        rabbitmq: { status: 'down', ms: expect.any(Number), error: 'failed' },
        temporal: { status: 'down', ms: expect.any(Number), error: 'timeout' },
      },
    });
    expect(aborted).toBe(true);
  });
});

describe('outages', () => {
  it('every 503 carries Retry-After, as the OpenAPI document promises (here: the identity provider is down)', async () => {
    const { app } = build({
      authenticator: () =>
        Promise.reject(new ApiError(503, 'auth_unavailable', 'The identity provider is down.')),
    });
    const res = await app.request('/orders', { headers: { Authorization: 'Bearer x.y.z' } });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(await res.json()).toMatchObject({ error: { code: 'auth_unavailable' } });
  });
});

describe('documentation', () => {
  it('GET /openapi.json describes /orders with the schema that validates it', async () => {
    const { app } = build();
    const res = await app.request('/openapi.json');
    expect(res.status).toBe(200);
    const doc = (await res.json()) as {
      paths: Record<string, Record<string, { requestBody?: unknown; responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, { properties?: Record<string, unknown>; required?: string[] }> };
    };
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/orders',
        '/orders/{id}',
        '/orders/{id}/cancel',
        '/products',
        '/products/{sku}',
        '/health',
        '/ready',
      ]),
    );
    expect(Object.keys(doc.paths['/orders']!.post!.responses)).toEqual(
      expect.arrayContaining(['202', '200', '400', '409', '413', '415', '422']),
    );
    expect(JSON.stringify(doc.paths['/orders']!.post!.requestBody)).toContain(
      '#/components/schemas/CreateOrderRequest',
    );
    const request = doc.components.schemas.CreateOrderRequest!;
    expect(Object.keys(request.properties!).sort()).toEqual(['customer_id', 'email', 'items']);
    // customer_id comes from the token; only an operator placing an order names it.
    expect(request.required!.sort()).toEqual(['email', 'items']);
    expect(doc.components.schemas.Order).toBeDefined();
    // Every error code is published with its meaning, and the writes declare what they answer.
    const code = JSON.stringify(doc.components.schemas.Error);
    for (const known of ['order_final', 'cancel_unavailable', 'idempotency_key_reused', 'unknown_sku'])
      expect(code).toContain(known);
    for (const path of ['/orders/{id}/cancel', '/orders/{id}/retry'])
      expect(Object.keys(doc.paths[path]!.post!.responses)).toEqual(
        expect.arrayContaining(['401', '403', '404', '409', '413', '415', '429', '503']),
      );
  });

  it('GET /docs serves Swagger UI from local files', async () => {
    const { app } = build();
    const page = await app.request('/docs');
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('/docs/assets/swagger-ui-bundle.js');
    expect(html).not.toMatch(/https?:\/\//);

    const bundle = await app.request('/docs/assets/swagger-ui-bundle.js');
    expect(bundle.status).toBe(200);
    expect(bundle.headers.get('content-type')).toContain('javascript');
    expect((await bundle.arrayBuffer()).byteLength).toBeGreaterThan(100_000);
    expect((await app.request('/docs/assets/init.js')).status).toBe(200);
    expect((await app.request('/docs/assets/package.json')).status).toBe(404);
    expect((await app.request('/docs/assets/..%2Fpackage.json')).status).toBe(404);
  });
});

describe('refused before any I/O', () => {
  it('415 for a body that is not JSON', async () => {
    const { app } = build();
    const res = await app.request('/orders', {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: '{"customer_id":"C1"}',
    });
    expect(res.status).toBe(415);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unsupported_media_type');
  });

  it('415 for a body without a content type', async () => {
    const { app } = build();
    const res = await app.request('/orders', { method: 'POST', body: new Blob(['{}']) });
    expect(res.status).toBe(415);
  });

  it('400 malformed_json for broken and for empty JSON', async () => {
    const { app } = build();
    for (const body of ['{"customer_id":', '']) {
      const res = await app.request('/orders', postJson(body));
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('malformed_json');
    }
  });

  it('413 for an oversized body, by Content-Length or by counting', async () => {
    const { app } = build({ maxBodyBytes: 1024 });
    const big = JSON.stringify({ customer_id: 'C1', email: 'a@b.co', items: [], pad: 'x'.repeat(2000) });
    const counted = await app.request('/orders', postJson(big));
    expect(counted.status).toBe(413);
    const declared = await app.request('/orders', postJson(big, { 'Content-Length': String(big.length) }));
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as { error: { code: string } }).error.code).toBe('payload_too_large');
  });

  it('400 validation_failed naming every bad field', async () => {
    const { app } = build();
    const res = await app.request(
      '/orders',
      postJson(JSON.stringify({ customer_id: '', email: 'nope', items: [{ sku: 'A', qty: 0 }], extra: 1 })),
    );
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; fields: Array<{ path: string }> } };
    expect(body.error.code).toBe('validation_failed');
    expect(body.error.fields.map((f) => f.path).sort()).toEqual([
      'customer_id',
      'email',
      'extra',
      'items[0].qty',
    ]);
  });

  it('400 for an over-long Idempotency-Key, naming the header', async () => {
    const { app } = build();
    const res = await app.request(
      '/orders',
      postJson(JSON.stringify({ customer_id: 'C1', email: 'a@b.co', items: [{ sku: 'A', qty: 1 }] }), {
        'Idempotency-Key': 'k'.repeat(256),
      }),
    );
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { fields: Array<{ path: string }> } };
    expect(body.error.fields.map((f) => f.path)).toEqual(['Idempotency-Key']);
  });

  it('400 for malformed ids and query parameters', async () => {
    const { app } = build();
    const byId = await app.request('/orders/not-a-uuid');
    expect(byId.status).toBe(400);
    expect(
      ((await byId.json()) as { error: { fields: Array<{ path: string }> } }).error.fields[0]!.path,
    ).toBe('id');
    const list = await app.request('/orders?limit=1000&colour=red');
    expect(list.status).toBe(400);
    const fields = ((await list.json()) as { error: { fields: Array<{ path: string }> } }).error.fields;
    expect(fields.map((f) => f.path).sort()).toEqual(['colour', 'limit']);
    const cursor = await app.request('/orders?cursor=garbage!');
    expect(cursor.status).toBe(400);
  });
});

describe('logs', () => {
  it("escape a client's C1 controls and bidi overrides: a log line cannot drive the terminal showing it", async () => {
    const { app, lines, rawLines } = build();
    // U+009B is a one-byte CSI ("\u009b2J" clears a terminal), U+202E reverses how the rest reads.
    const res = await app.request('/orders/%C2%9B2J%E2%80%AEnimda');
    expect(res.status).toBe(400);
    const logged = rawLines.filter((line) => line.includes('nimda'));
    expect(logged.length).toBeGreaterThan(0);
    for (const line of logged) {
      expect(line).not.toMatch(/[\u0080-\u009f\u202e]/);
      expect(line).toContain('\\u009b2J\\u202enimda');
    }
    // Still JSON, and it still says what the client sent.
    expect(lines.map((line) => line.path)).toContain('/orders/\u009b2J\u202enimda');
  });
});

describe('correlation ids and errors', () => {
  it('echoes a valid X-Correlation-Id and replaces an unsafe one', async () => {
    const { app } = build();
    const kept = await app.request('/health', { headers: { 'X-Correlation-Id': 'req-123.abc' } });
    expect(kept.headers.get('x-correlation-id')).toBe('req-123.abc');
    const replaced = await app.request('/health', { headers: { 'X-Correlation-Id': 'bad id\twith spaces' } });
    expect(replaced.headers.get('x-correlation-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers unknown routes with a JSON 404 carrying the correlation id', async () => {
    const { app } = build();
    const res = await app.request('/nope', { headers: { 'X-Correlation-Id': 'c-404' } });
    expect(res.status).toBe(404);
    expect(res.headers.get('x-correlation-id')).toBe('c-404');
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });

  it('answers a known path with an unsupported method with 405 and Allow', async () => {
    const { app } = build();
    const trace = await app.request('/products', { method: 'PATCH' }); // undici refuses TRACE itself
    expect(trace.status).toBe(405);
    expect(trace.headers.get('allow')).toBe('GET, HEAD');
    expect(((await trace.json()) as { error: { code: string } }).error.code).toBe('method_not_allowed');
    const id = '00000000-0000-4000-8000-000000000000';
    expect((await app.request(`/orders/${id}`, { method: 'DELETE' })).headers.get('allow')).toBe('GET, HEAD');
    expect((await app.request(`/orders/${id}/cancel`, { method: 'GET' })).headers.get('allow')).toBe('POST');
    expect((await app.request('/orders', { method: 'PUT' })).headers.get('allow')).toBe('GET, HEAD, POST');
    expect((await app.request('/orders/x/y/z', { method: 'GET' })).status).toBe(404);
    expect((await app.request('/orders/', { method: 'GET' })).status).toBe(404); // routing is strict about '/'
  });

  it('answers 503 with Retry-After while the database is down (connection refused, shutting down)', async () => {
    for (const code of ['ECONNREFUSED', '57P01']) {
      const down = {
        query: () =>
          Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code })),
        connect: () =>
          Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code })),
      } as unknown as Pool;
      const { app } = build({ pool: down });
      const res = await app.request('/products');
      expect(res.status, code).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(await res.json()).toEqual({ error: { code: 'unavailable', message: expect.any(String) } });
    }
  });

  it('answers 400, not 500, when PostgreSQL refuses a value (a data error the request must have brought)', async () => {
    for (const code of ['22008', '22P02', '22021']) {
      const refusing = {
        query: () => Promise.reject(Object.assign(new Error('date/time field value out of range'), { code })),
        connect: () =>
          Promise.reject(Object.assign(new Error('date/time field value out of range'), { code })),
      } as unknown as Pool;
      const { app, lines } = build({ pool: refusing });
      const res = await app.request('/products');
      expect(res.status, code).toBe(400);
      expect(await res.json()).toEqual({ error: { code: 'validation_failed', message: expect.any(String) } });
      expect(
        lines.some((l) => l.msg === 'request value refused by PostgreSQL'),
        code,
      ).toBe(true);
    }
  });

  it('turns an unexpected failure into a plain 500 and logs it with the correlation id', async () => {
    const { app, lines } = build();
    const res = await app.request('/products', { headers: { 'X-Correlation-Id': 'c-500' } });
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toContain('secret-db-detail');
    expect(JSON.parse(text)).toEqual({
      error: { code: 'internal', message: expect.stringContaining('c-500') },
    });
    const logged = lines.find((line) => line.msg === 'unhandled error');
    expect(logged).toMatchObject({ correlationId: 'c-500', path: '/products' });
    expect(JSON.stringify(logged)).toContain('secret-db-detail');
    expect(lines.find((line) => line.msg === 'request failed')).toMatchObject({
      correlationId: 'c-500',
      method: 'GET',
      status: 500,
      ms: expect.any(Number),
    });
  });
});

describe('text the database could not store is refused at the edge', () => {
  const orderId = '0b7e6c1e-8f4e-4a7c-9a43-3f0f8f7c2b1d';
  it.each([
    ['a NUL byte', '"stop\\u0000now"'],
    ['a lone high surrogate', '"\\ud800"'],
    ['a lone low surrogate', '"abc\\udfff"'],
    ['a bell', '"ring\\u0007"'],
    ['an escape sequence', '"\\u001b[31mred"'],
    ['a line break (log forging)', '"ok\\nlevel=error forged"'],
    ['DEL', '"x\\u007f"'],
    ['a C1 control', '"x\\u0085"'],
  ])('a cancel reason with %s is a 400 naming the field, before any I/O', async (_what, json) => {
    const { app } = build();
    const res = await app.request(`/orders/${orderId}/cancel`, postJson(`{"reason":${json}}`));
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; fields: Array<{ path: string }> } };
    expect(body.error.code).toBe('validation_failed');
    expect(body.error.fields.map((f) => f.path)).toEqual(['reason']);
  });

  it('a body that is not UTF-8 is a 400, not a string with replacement characters', async () => {
    const { app } = build();
    const bytes = Buffer.concat([Buffer.from('{"reason":"caf'), Buffer.from([0xe9]), Buffer.from('"}')]);
    const res = await app.request(`/orders/${orderId}/cancel`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: bytes,
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'malformed_json' } });
  });

  it('accepts ordinary text, accents and emoji included (it then needs the database)', async () => {
    const { app } = build();
    const res = await app.request(
      `/orders/${orderId}/cancel`,
      postJson(JSON.stringify({ reason: 'changé d’avis 🙂' })),
    );
    expect(res.status).not.toBe(400); // validation passed; the untouchable database then failed
  });
});
