/**
 * The small HTTP server of each process that is not the API (outbox publisher, bridge, Temporal
 * worker, loyalty and analytics subscribers), on a port of its own:
 *
 *   GET /metrics   the process's Prometheus registry
 *   GET /health    liveness: answers while the event loop does; no I/O
 *   GET /ready     readiness: the process's own dependencies, over the connections it already holds
 *                  (lib/probes.ts); 200 or 503 with the same body as the API's `GET /ready`
 *
 * Node's `http` module, nothing more: three routes need no framework. Started in `main()`, closed on
 * shutdown; port 0 picks a free port (tests read `server.port`).
 *
 * @example
 * const server = await startProbeServer({
 *   name: 'outbox', host: config.METRICS_HOST, port: config.OUTBOX_HTTP_PORT, portSetting: 'OUTBOX_HTTP_PORT',
 *   registry, checks: { postgres: postgresProbe(pool), rabbitmq: rabbitmqProbe(amqp) }, logger,
 * });
 * // … on shutdown
 * await server.close();
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.js';
import { sharedReadiness, type Probe } from './probes.js';

export interface ProbeServerOptions {
  /** For logs: which process this is. */
  name: string;
  host: string;
  port: number;
  /** The setting that chose the port, named when the port is taken. */
  portSetting?: string;
  registry: Registry;
  /** `/ready` is 200 only when every probe resolves. */
  checks: Record<string, Probe>;
  logger: Logger;
  /** Per-probe deadline for `/ready`. Default 2000. */
  readyTimeoutMs?: number;
}

export interface ProbeServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** e.g. `http://127.0.0.1:9101` */
  readonly url: string;
  /** Stops listening and cuts open keep-alive connections (a scraper's). */
  close(): Promise<void>;
}

export async function startProbeServer(opts: ProbeServerOptions): Promise<ProbeServer> {
  const { registry, checks, logger, readyTimeoutMs = 2_000 } = opts;
  const log = logger.child({ component: 'probe-server' });
  const readiness = sharedReadiness(checks, readyTimeoutMs);

  const routes: Record<string, (res: ServerResponse) => Promise<void>> = {
    async '/metrics'(res) {
      const body = await registry.metrics();
      res.writeHead(200, { 'Content-Type': registry.contentType, 'Cache-Control': 'no-store' });
      res.end(body);
    },
    async '/health'(res) {
      json(res, 200, { status: 'ok' });
    },
    async '/ready'(res) {
      const { ready, checks: results } = await readiness(log);
      json(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not_ready', checks: results });
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://probe').pathname;
    const route = routes[path];
    if (!route) {
      return json(res, 404, {
        error: { code: 'not_found', message: `No route for ${path}; try /metrics, /health or /ready.` },
      });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return json(res, 405, {
        error: { code: 'method_not_allowed', message: `${req.method} is not supported on ${path}; use GET.` },
      });
    }
    await route(res);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err, path: req.url }, 'probe server: request failed');
      if (!res.headersSent) json(res, 500, { error: { code: 'internal', message: 'Internal error.' } });
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const hint =
        err.code === 'EADDRINUSE'
          ? `: port ${opts.port} is taken${opts.portSetting ? `; set ${opts.portSetting} to a free port` : ''}`
          : '';
      reject(new Error(`${opts.name}: cannot listen on ${opts.host}:${opts.port}${hint} (${err.message})`));
    };
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  log.info({ url: `http://${host}:${port}`, routes: Object.keys(routes) }, 'probe server listening');

  return {
    port,
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(body));
}
