/** The probe server every non-API process runs (lib/http-probe-server.ts), on a free port. */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startProbeServer, type ProbeServer } from '../../lib/http-probe-server.js';
import { createLogger } from '../../lib/logger.js';
import { createRegistry, outboxMetrics } from '../../lib/metrics.js';
import type { Probe } from '../../lib/probes.js';

const logger = createLogger('probe-server-test', 'silent');
const up: Probe = async () => {};
const down: Probe = async () => {
  throw new Error('connection refused');
};
let server: ProbeServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(checks: Record<string, Probe>, readyTimeoutMs?: number) {
  const registry = createRegistry({ defaultMetrics: false });
  outboxMetrics(registry).published(2);
  server = await startProbeServer({
    name: 'test',
    host: '127.0.0.1',
    port: 0,
    registry,
    checks,
    logger,
    ...(readyTimeoutMs ? { readyTimeoutMs } : {}),
  });
  return server;
}

describe('probe server', () => {
  it('serves the registry at /metrics in the Prometheus text format', async () => {
    const { url, port } = await start({ postgres: up });
    expect(port).toBeGreaterThan(0);
    const res = await fetch(`${url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await res.text()).toMatch(/^acme_outbox_published_total 2$/m);
  });

  it('/health answers without asking any dependency', async () => {
    let asked = 0;
    const { url } = await start({ postgres: async () => void (asked += 1) });
    const res = await fetch(`${url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
    expect(asked).toBe(0);
  });

  it('/ready is 200 when every dependency answers, 503 naming the one that does not', async () => {
    let { url } = await start({ postgres: up, rabbitmq: up });
    let res = await fetch(`${url}/ready`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      status: 'ready',
      checks: { postgres: { status: 'up' }, rabbitmq: { status: 'up' } },
    });
    await server!.close();

    const hanging: Probe = (signal) => new Promise((_, reject) => signal.addEventListener('abort', reject));
    ({ url } = await start({ postgres: up, rabbitmq: down, temporal: hanging }, 100));
    res = await fetch(`${url}/ready`);
    expect(res.status).toBe(503);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await res.json()).toMatchObject({
      status: 'not_ready',
      checks: {
        postgres: { status: 'up' },
        rabbitmq: { status: 'down', error: 'failed' },
        temporal: { status: 'down', error: 'timeout' },
      },
    });
  });

  it('answers 404 elsewhere and 405 to anything but GET and HEAD', async () => {
    const { url } = await start({});
    expect((await fetch(`${url}/nope`)).status).toBe(404);
    const post = await fetch(`${url}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect((await fetch(`${url}/health`, { method: 'HEAD' })).status).toBe(200);
  });

  it('says which setting to change when its port is taken', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      await expect(
        startProbeServer({
          name: 'bridge',
          host: '127.0.0.1',
          port,
          portSetting: 'BRIDGE_HTTP_PORT',
          registry: createRegistry({ defaultMetrics: false }),
          checks: {},
          logger,
        }),
      ).rejects.toThrow(
        `bridge: cannot listen on 127.0.0.1:${port}: port ${port} is taken; set BRIDGE_HTTP_PORT`,
      );
    } finally {
      taken.close();
    }
  });

  it('close() also ends a scraper’s kept-alive connection', async () => {
    const { url } = await start({});
    await fetch(`${url}/metrics`, { headers: { connection: 'keep-alive' } });
    const closing = server!.close();
    server = undefined;
    await expect(closing).resolves.toBeUndefined();
  });
});
