/**
 * Entry point of the bridge (`npm run start:bridge`): RabbitMQ `order.placed` / `order.retried` →
 * a run of the Temporal order saga.
 * Scale by running more (each takes up to BRIDGE_PREFETCH messages at a time). SIGTERM/SIGINT stop
 * taking messages, let in-flight starts finish, then close the connections. Serves `/metrics`,
 * `/health` and `/ready` on BRIDGE_HTTP_PORT, from the start (not ready while Temporal is awaited).
 */
import type { Client } from '@temporalio/client';
import { connectAmqp } from '../lib/amqp/connection.js';
import { describeError } from '../lib/amqp/consumer.js';
import { loadConfig, type Config } from '../lib/config.js';
import { startProbeServer, type ProbeServer } from '../lib/http-probe-server.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { createRegistry } from '../lib/metrics.js';
import { postgresProbe, rabbitmqProbe, temporalProbe } from '../lib/probes.js';
import { runMain, waitForShutdownSignal } from '../lib/process.js';
import { connectTemporal } from '../lib/temporal.js';
import { startTracing, type Tracing } from '../lib/tracing.js';
import { createPool, poolSettings } from '../db/pool.js';
import { createBridge } from './bridge.js';

const NAME = 'bridge';
const PROBE_TIMEOUT_MS = 2_000;

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(NAME, config.LOG_LEVEL);
  const tracing = await startTracing(config, 'acme-bridge', logger);
  const shutdown = waitForShutdownSignal();

  const amqp = connectAmqp(config, { name: `acme-${NAME}`, logger });
  // One read and one write per message; the pool is sized for the prefetch, not beyond it.
  const pool = createPool(config.DATABASE_URL, Math.min(config.DATABASE_POOL_MAX, 4), `acme-${NAME}`, {
    ...poolSettings(config),
  });
  const registry = createRegistry();
  let temporal: Client | undefined;
  let probes: ProbeServer | undefined;
  try {
    probes = await startProbeServer({
      name: NAME,
      host: config.METRICS_HOST,
      port: config.BRIDGE_HTTP_PORT,
      portSetting: 'BRIDGE_HTTP_PORT',
      registry,
      checks: {
        postgres: postgresProbe(pool),
        rabbitmq: rabbitmqProbe(amqp),
        temporal: temporalProbe(() => temporal?.connection, PROBE_TIMEOUT_MS),
      },
      logger,
    });
    temporal = await connectTemporalPatiently(config, tracing, logger, shutdown);
    if (!temporal) return;
    const bridge = createBridge({ amqp, temporal, pool, config, logger, registry });
    await Promise.race([bridge.start(), shutdown]);
    logger.info(
      { queue: config.BRIDGE_QUEUE, taskQueue: config.TEMPORAL_TASK_QUEUE, prefetch: config.BRIDGE_PREFETCH },
      'bridge started',
    );
    const signal = await shutdown;
    logger.info({ signal }, 'draining: finishing in-flight messages');
    await bridge.stop();
  } finally {
    await probes?.close().catch((err: unknown) => logger.warn({ err }, 'closing the probe server failed'));
    await amqp.close().catch((err: unknown) => logger.warn({ err }, 'closing RabbitMQ failed'));
    await pool.end().catch((err: unknown) => logger.warn({ err }, 'closing PostgreSQL failed'));
    await temporal?.connection
      .close()
      .catch((err: unknown) => logger.warn({ err }, 'closing Temporal failed'));
    await tracing.shutdown();
  }
  logger.info('bridge stopped');
}

/**
 * Temporal may come up after us (compose, a rolling restart): keep trying rather than crash-loop.
 * Returns undefined if a shutdown signal arrives first.
 */
async function connectTemporalPatiently(
  config: Config,
  tracing: Tracing,
  logger: Logger,
  shutdown: Promise<unknown>,
): Promise<Client | undefined> {
  let stop = false;
  void shutdown.then(() => (stop = true));
  for (let attempt = 1; !stop; attempt += 1) {
    try {
      return await connectTemporal(config, { tracing: tracing.temporal });
    } catch (err) {
      const retryInMs = Math.min(1000 * 2 ** (attempt - 1), 15_000);
      logger.warn(
        { err: describeError(err), address: config.TEMPORAL_ADDRESS, retryInMs },
        'cannot connect to Temporal; retrying (is it running? check TEMPORAL_ADDRESS)',
      );
      await Promise.race([new Promise((resolve) => setTimeout(resolve, retryInMs).unref()), shutdown]);
    }
  }
  return undefined;
}

runMain(NAME, main);
