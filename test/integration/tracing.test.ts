/**
 * One order, one trace: with tracing on, the spans of `POST /orders` (over real HTTP), the outbox
 * publish, the bridge's consume and workflow start, the workflow, every activity, the events the
 * activities publish and a subscriber's consume all share one trace id, each span a descendant of the
 * request's. Spans go to an in-memory exporter; the rest is the real system on the real servers.
 *
 * The SDK is registered globally for this file's worker only; tracing off is the default everywhere
 * else (and tests/unit/tracing.test.ts checks that off loads no SDK).
 */
import { serve, type ServerType } from '@hono/node-server';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { QueueConsumer } from '../../lib/amqp/consumer.js';
import { connectAmqp, type AmqpConnectionManager } from '../../lib/amqp/connection.js';
import { startTracingSdk } from '../../lib/tracing-sdk.js';
import { bearer } from '../helpers/auth.js';
import type { Tracing } from '../../lib/tracing.js';
import { createLoyaltySubscriber } from '../../subscribers/loyalty/consumer.js';
import { captureLogger, waitFor } from '../helpers/amqp.js';
import { startSystem, type TestSystem } from '../helpers/system.js';

const exporter = new InMemorySpanExporter();
let tracing: Tracing;
let system: TestSystem;
let server: ServerType;
let baseUrl: string;
let amqp: AmqpConnectionManager;
let loyalty: QueueConsumer;

beforeAll(async () => {
  const { logger } = captureLogger('warn');
  tracing = startTracingSdk(
    { ZIPKIN_URL: 'http://127.0.0.1:9/unused', OTEL_EXPORTER_OTLP_ENDPOINT: undefined },
    'acme-test',
    logger,
    { exporter },
  );
  system = await startSystem({}, { tracing: tracing.temporal! });
  amqp = connectAmqp(system.config, { name: 'test-tracing-loyalty', logger });
  loyalty = createLoyaltySubscriber({ amqp, pool: system.db.pool, config: system.config, logger });
  await loyalty.start();
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: system.app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  baseUrl = `http://127.0.0.1:${address.port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await loyalty?.stop();
  await amqp?.close();
  await system?.stop();
  await tracing?.shutdown();
});

/** The spans of `traceId` whose chain of parents reaches `root` (so: one tree, not just one id). */
function descendantsOf(root: ReadableSpan): ReadableSpan[] {
  const traceId = root.spanContext().traceId;
  const inTrace = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
  const byId = new Map(inTrace.map((s) => [s.spanContext().spanId, s]));
  const reachesRoot = (span: ReadableSpan): boolean => {
    for (let s: ReadableSpan | undefined = span, hops = 0; s && hops < 100; hops += 1) {
      if (s === root) return true;
      s = s.parentSpanId ? byId.get(s.parentSpanId) : undefined;
    }
    return false;
  };
  return inTrace.filter(reachesRoot);
}

describe('an order traced end to end', () => {
  it('is one trace from the HTTP request to order.completed and the subscriber that reads it', async () => {
    const res = await fetch(`${baseUrl}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(await system.auth.customerToken('C-TRACED')) },
      body: JSON.stringify({
        customer_id: 'C-TRACED',
        email: 'traced@example.com',
        items: [{ sku: 'TSHIRT-GRY-S', qty: 1 }],
      }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await system.waitForFinal(id);

    const request = await waitFor(() => exporter.getFinishedSpans().find((s) => s.name === 'POST /orders'), {
      what: 'the request span',
    });
    const expected = [
      'POST /orders',
      'publish order.placed',
      `${system.config.BRIDGE_QUEUE} process`,
      'StartWorkflow:orderSaga',
      'RunWorkflow:orderSaga',
      'StartActivity:reserveInventory',
      'RunActivity:reserveInventory',
      'RunActivity:chargePayment',
      'RunActivity:completeOrder',
      'publish inventory.reserved',
      'publish payment.completed',
      'publish order.completed',
      `${system.config.LOYALTY_QUEUE} process`,
    ];
    const names = await waitFor(
      () => {
        const seen = new Set(descendantsOf(request).map((s) => s.name));
        return expected.every((name) => seen.has(name)) ? seen : undefined;
      },
      { timeoutMs: 20_000, what: 'every step of the order in its trace' },
    ).catch(() => new Set(descendantsOf(request).map((s) => s.name)));
    expect([...names].sort()).toEqual(expect.arrayContaining(expected));

    const spans = descendantsOf(request);
    // The database work is in it too (the pg instrumentation), under the request and the activities.
    expect(spans.some((s) => s.name.startsWith('pg.query'))).toBe(true);
    // The request span is named after its route and carries the correlation id.
    expect(request.attributes['http.route']).toBe('/orders');
    expect(request.attributes['acme.correlation_id']).toBe(res.headers.get('x-correlation-id'));
    // A publish span says which order and event it carried.
    const completed = spans.find((s) => s.name === 'publish order.completed')!;
    expect(completed.attributes['acme.order_id']).toBe(id);
    // Every request about the order says which, so a search by acme.order_id finds them all: the one
    // that placed it, and a later read or cancel (in traces of their own).
    expect(request.attributes['acme.order_id']).toBe(id);
    const asCustomer = bearer(await system.auth.customerToken('C-TRACED'));
    await fetch(`${baseUrl}/orders/${id}`, { headers: asCustomer });
    await fetch(`${baseUrl}/orders/${id}/cancel`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...asCustomer },
      body: '{}',
    });
    for (const name of ['GET /orders/:id', 'POST /orders/:id/cancel']) {
      const span = await waitFor(() => exporter.getFinishedSpans().find((s) => s.name === name), {
        what: `the ${name} span`,
      });
      expect(span.attributes['acme.order_id']).toBe(id);
    }
    // Refused before its route ran (no token): still tagged, from the path.
    await fetch(`${baseUrl}/orders/${id}/retry`, { method: 'POST' });
    const status = (s: ReadableSpan) =>
      s.attributes['http.response.status_code'] ?? s.attributes['http.status_code'];
    await waitFor(
      () =>
        exporter.getFinishedSpans().find((s) => status(s) === 401 && s.attributes['acme.order_id'] === id),
      { what: "the refused request's span, tagged with the order" },
    );
  });

  it("traces an order whatever the caller's trace headers say, and carries none of its baggage", async () => {
    const callerTrace = 'c'.repeat(32);
    const res = await fetch(`${baseUrl}/orders`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...bearer(await system.auth.customerToken('C-UNSAMPLED')),
        traceparent: `00-${callerTrace}-${'d'.repeat(16)}-00`, // "not sampled"
        baggage: `filler=${'x'.repeat(4000)}`,
      },
      body: JSON.stringify({
        customer_id: 'C-UNSAMPLED',
        email: 'unsampled@example.com',
        items: [{ sku: 'TSHIRT-GRY-S', qty: 1 }],
      }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await system.waitForFinal(id);
    const request = await waitFor(
      () =>
        exporter
          .getFinishedSpans()
          .find((s) => s.name === 'POST /orders' && s.spanContext().traceId === callerTrace),
      { what: 'the request span, recorded although the caller said not sampled' },
    );
    // The saga's spans end with its run, a moment after the order's final status is written.
    await waitFor(() => descendantsOf(request).some((s) => s.name === 'RunWorkflow:orderSaga'), {
      what: "the saga's run in the caller's trace",
    });
    const { rows } = await system.db.pool.query<{ headers: Record<string, string> }>(
      'select headers from event_outbox where order_id = $1',
      [id],
    );
    expect(rows.length).toBeGreaterThan(0);
    for (const { headers } of rows) {
      expect(headers).not.toHaveProperty('baggage');
      expect(headers.traceparent).toMatch(new RegExp(`^00-${callerTrace}-[0-9a-f]{16}-01$`));
    }
  });

  it('keeps probes and scrapes out of traces', async () => {
    const before = exporter.getFinishedSpans().length;
    expect((await fetch(`${baseUrl}/health`)).status).toBe(200);
    expect((await fetch(`${baseUrl}/metrics`)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const after = exporter.getFinishedSpans().slice(before);
    expect(after.filter((s) => s.name.startsWith('GET'))).toEqual([]);
  });
});
