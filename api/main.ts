/**
 * The API process: `npm run start:api` (compiled: node dist/api/main.js). Reads config once,
 * connects PostgreSQL, Temporal and (for its readiness only) RabbitMQ, serves on PORT (with
 * `/metrics`), and on SIGTERM/SIGINT stops accepting, lets in-flight requests finish, then closes
 * its connections.
 */
import type { Client } from '@temporalio/client';
import { connectAmqp } from '../lib/amqp/connection.js';
import { loadConfig } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { createRegistry } from '../lib/metrics.js';
import { postgresProbe, rabbitmqProbe, temporalProbe } from '../lib/probes.js';
import { runMain, waitForShutdownSignal } from '../lib/process.js';
import { connectTemporal } from '../lib/temporal.js';
import { startTracing } from '../lib/tracing.js';
import { createPool, poolSettings } from '../db/pool.js';
import { createApp } from './app.js';
import { createAuthenticator } from './auth.js';
import { createTemporalOrderWorkflows } from './order-workflows.js';
import { close, listen } from './server.js';

const PROBE_TIMEOUT_MS = 2_000;
const CANCEL_TIMEOUT_MS = 5_000;
/** In-flight requests get this long after a stop signal; then remaining connections are cut. */
const DRAIN_TIMEOUT_MS = 10_000;

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger('api', config.LOG_LEVEL);
  const tracing = await startTracing(config, 'acme-api', logger);
  // A request that cannot get a connection soon is answered 503 + Retry-After, not queued for long.
  const pool = createPool(config.DATABASE_URL, config.DATABASE_POOL_MAX, 'acme-api', {
    acquireTimeoutMs: config.DATABASE_POOL_ACQUIRE_TIMEOUT_MS,
    ...poolSettings(config),
  });
  // Before any connection: a missing or unreadable key stops the process with a message.
  const authenticator = await createAuthenticator(config);
  // The API publishes nothing (the outbox publisher does): this one long-lived connection is only
  // what `/ready` looks at, instead of a connection opened per probe.
  const amqp = connectAmqp(config, { name: 'acme-api', logger });
  let temporal: Client | undefined;
  try {
    // Orders are taken while Temporal is down; a failed cancel or probe is answered (503), not retried.
    temporal = await connectTemporal(config, { lazy: true, retries: false, tracing: tracing.temporal });
    const app = createApp({
      pool,
      logger,
      workflows: createTemporalOrderWorkflows(temporal, { timeoutMs: CANCEL_TIMEOUT_MS }),
      config,
      checks: {
        postgres: postgresProbe(pool),
        rabbitmq: rabbitmqProbe(amqp),
        temporal: temporalProbe(temporal.connection, PROBE_TIMEOUT_MS),
      },
      registry: createRegistry(),
      readyTimeoutMs: PROBE_TIMEOUT_MS,
      authenticator,
      rateLimit: { writes: config.RATE_LIMIT_WRITES, windowMs: config.RATE_LIMIT_WINDOW_MS },
    });
    const shutdown = waitForShutdownSignal();
    const server = await listen(app.fetch, config.PORT);
    logger.info(
      {
        port: config.PORT,
        docs: `http://localhost:${config.PORT}/docs`,
        auth: config.AUTH_JWKS_URL ?? `local key pair in ${config.AUTH_LOCAL_KEY_DIR}`,
      },
      'api listening',
    );
    const signal = await shutdown;
    logger.info({ signal }, 'stopping: no new connections, draining requests');
    await close(server, logger, DRAIN_TIMEOUT_MS);
  } finally {
    await pool.end().catch((err: unknown) => logger.error({ err }, 'closing the database pool failed'));
    await amqp.close().catch((err: unknown) => logger.warn({ err }, 'closing RabbitMQ failed'));
    await temporal?.connection
      .close()
      .catch((err: unknown) => logger.error({ err }, 'closing the Temporal connection failed'));
    await tracing.shutdown();
    logger.info('api stopped');
  }
}

runMain('api', main);
