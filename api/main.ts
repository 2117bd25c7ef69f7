/**
 * The API process: `npm run start:api` (tsx api/main.ts). Reads config once, connects PostgreSQL
 * and Temporal, serves on PORT, and on SIGTERM/SIGINT stops accepting, lets in-flight requests
 * finish, then closes the pool and the Temporal connection.
 */
import { serve, type ServerType } from '@hono/node-server';
import type { Client } from '@temporalio/client';
import { loadConfig } from '../lib/config.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { runMain, waitForShutdownSignal } from '../lib/process.js';
import { connectTemporal } from '../lib/temporal.js';
import { createPool } from '../db/pool.js';
import { createApp } from './app.js';
import { createTemporalOrderWorkflows } from './order-workflows.js';
import { postgresProbe, rabbitmqProbe, temporalProbe } from './probes.js';

const PROBE_TIMEOUT_MS = 2_000;
const CANCEL_TIMEOUT_MS = 5_000;
/** In-flight requests get this long after a stop signal; then remaining connections are cut. */
const DRAIN_TIMEOUT_MS = 10_000;

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger('api', config.LOG_LEVEL);
  const pool = createPool(config.DATABASE_URL, config.DATABASE_POOL_MAX, 'acme-api');
  let temporal: Client | undefined;
  try {
    // Orders are taken while Temporal is down; a failed cancel or probe is answered (503), not retried.
    temporal = await connectTemporal(config, { lazy: true, retries: false });
    const app = createApp({
      pool,
      logger,
      workflows: createTemporalOrderWorkflows(temporal, { timeoutMs: CANCEL_TIMEOUT_MS }),
      config,
      checks: {
        postgres: postgresProbe(pool),
        rabbitmq: rabbitmqProbe(config.AMQP_URL, PROBE_TIMEOUT_MS),
        temporal: temporalProbe(temporal, PROBE_TIMEOUT_MS),
      },
      readyTimeoutMs: PROBE_TIMEOUT_MS,
    });
    const shutdown = waitForShutdownSignal();
    const server = await listen(app.fetch, config.PORT);
    logger.info({ port: config.PORT, docs: `http://localhost:${config.PORT}/docs` }, 'api listening');
    const signal = await shutdown;
    logger.info({ signal }, 'stopping: no new connections, draining requests');
    await close(server, logger);
  } finally {
    await pool.end().catch((err: unknown) => logger.error({ err }, 'closing the database pool failed'));
    await temporal?.connection
      .close()
      .catch((err: unknown) => logger.error({ err }, 'closing the Temporal connection failed'));
    logger.info('api stopped');
  }
}

function listen(
  fetch: (request: Request) => Response | Promise<Response>,
  port: number,
): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, port }, () => {
      server.off('error', reject);
      resolve(server);
    });
    server.once('error', reject); // e.g. EADDRINUSE: set PORT to a free port
  });
}

async function close(server: ServerType, logger: Logger): Promise<void> {
  const timer = setTimeout(() => {
    logger.warn({ timeoutMs: DRAIN_TIMEOUT_MS }, 'drain timed out; closing remaining connections');
    if ('closeAllConnections' in server) server.closeAllConnections();
  }, DRAIN_TIMEOUT_MS);
  try {
    await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
  } finally {
    clearTimeout(timer);
  }
}

runMain('api', main);
