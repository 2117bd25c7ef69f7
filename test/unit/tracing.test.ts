/**
 * Tracing off (the default) costs nothing: no OpenTelemetry SDK is loaded, and the code on the hot
 * paths (outbox rows, publishing, consuming) writes no trace context. Checked in a child process, so
 * that what this test runner itself loads does not count.
 */
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const probe = `
  const { createRequire } = await import('node:module');
  const require = createRequire(process.cwd() + '/');
  await import('./api/app.ts');
  await import('./workers/outbox-publisher.ts');
  await import('./lib/amqp/consumer.ts');
  const tracing = await import('./lib/tracing.ts');
  const handle = await tracing.startTracing({ TRACING: 'off', ZIPKIN_URL: 'http://127.0.0.1:9411/api/v2/spans' }, 'probe', console);
  let inSpan;
  await tracing.withSpan('x', { kind: tracing.SpanKind.INTERNAL }, async () => (inSpan = tracing.traceContextHeaders()));
  const sdk = Object.keys(require.cache).filter((f) => /@opentelemetry\\/(sdk-|instrumentation|exporter-)|interceptors-opentelemetry/.test(f));
  console.log(JSON.stringify({ enabled: handle.enabled, sdk, headers: inSpan }));
`;

describe('tracing off', () => {
  it('loads no SDK and writes no trace context', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', probe],
      { cwd: process.cwd() },
    );
    const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      enabled: boolean;
      sdk: string[];
      headers: Record<string, string>;
    };
    expect(result).toEqual({ enabled: false, sdk: [], headers: {} });
  }, 30_000);

  it('loads the SDK and writes W3C trace context when on', async () => {
    const on = probe
      .replace("TRACING: 'off'", "TRACING: 'on'")
      .replace('console);', '{ info() {}, warn() {}, error() {} });');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', on],
      { cwd: process.cwd() },
    );
    const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      enabled: boolean;
      sdk: string[];
      headers: Record<string, string>;
    };
    expect(result.enabled).toBe(true);
    expect(result.sdk.length).toBeGreaterThan(0);
    expect(result.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  }, 30_000);

  it('exports to an OTLP/HTTP collector at <OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces when one is set', async () => {
    // A stand-in collector: it records what reaches it, as Jaeger's or Tempo's OTLP receiver would.
    const received: Array<{ url: string | undefined; body: string }> = [];
    const collector = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      req.on('end', () => {
        received.push({ url: req.url, body });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
    const script = `
      const tracing = await import('./lib/tracing.ts');
      const quiet = { info() {}, warn() {}, error() {} };
      const handle = await tracing.startTracing(
        { TRACING: 'on', ZIPKIN_URL: 'http://127.0.0.1:9/unused', OTEL_EXPORTER_OTLP_ENDPOINT: '${endpoint}' },
        'acme-otlp-probe',
        quiet,
      );
      await tracing.withSpan('publish order.placed', { kind: tracing.SpanKind.PRODUCER }, async () => {});
      await handle.shutdown();
    `;
    try {
      await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: process.cwd(),
      });
    } finally {
      collector.close();
    }
    expect(received.map((r) => r.url)).toEqual(['/v1/traces']);
    expect(received[0]!.body).toContain('publish order.placed');
    expect(received[0]!.body).toContain('acme-otlp-probe');
  }, 30_000);
});
