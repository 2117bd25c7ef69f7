/**
 * Entry point of the outbox publisher (`npm run start:outbox`). Run as many as you like: they share
 * the outbox through `for update skip locked`. SIGTERM/SIGINT finish the current batch, then exit.
 * Serves `/metrics`, `/health` and `/ready` on OUTBOX_HTTP_PORT, and runs the retention job.
 */
import { connectAmqp } from '../lib/amqp/connection.js';
import { loadConfig } from '../lib/config.js';
import { startProbeServer, type ProbeServer } from '../lib/http-probe-server.js';
import { createLogger } from '../lib/logger.js';
import { createRegistry } from '../lib/metrics.js';
import { postgresProbe, rabbitmqProbe } from '../lib/probes.js';
import { runMain, waitForShutdownSignal } from '../lib/process.js';
import { startTracing } from '../lib/tracing.js';
import { createPool, poolSettings } from '../db/pool.js';
import { OutboxPublisher } from './outbox-publisher.js';
import { startRetentionJob, type RetentionJob } from './retention.js';

const NAME = 'outbox-publisher';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(NAME, config.LOG_LEVEL);
  const tracing = await startTracing(config, 'acme-outbox', logger);
  // One batch transaction at a time, a scrape's query, and headroom for a batch racing a shutdown.
  const pool = createPool(config.DATABASE_URL, Math.min(config.DATABASE_POOL_MAX, 4), `acme-${NAME}`, {
    ...poolSettings(config),
  });
  const amqp = connectAmqp(config, { name: `acme-${NAME}`, logger });
  const registry = createRegistry();
  const publisher = new OutboxPublisher({ pool, amqp, config, logger, registry });
  let probes: ProbeServer | undefined;
  let retention: RetentionJob | undefined;
  try {
    probes = await startProbeServer({
      name: NAME,
      host: config.METRICS_HOST,
      port: config.OUTBOX_HTTP_PORT,
      portSetting: 'OUTBOX_HTTP_PORT',
      registry,
      checks: { postgres: postgresProbe(pool), rabbitmq: rabbitmqProbe(amqp) },
      logger,
    });
    publisher.start();
    // Pruning runs with the publisher: see workers/retention.ts for why here.
    retention = startRetentionJob({ pool, config, logger });
    logger.info(
      { exchange: config.AMQP_EXCHANGE, batchSize: config.OUTBOX_BATCH_SIZE },
      'outbox publisher started',
    );
    const signal = await waitForShutdownSignal();
    logger.info({ signal }, 'draining: finishing the current batch');
    await publisher.stop();
  } finally {
    await retention?.stop().catch((err: unknown) => logger.warn({ err }, 'stopping retention failed'));
    await probes?.close().catch((err: unknown) => logger.warn({ err }, 'closing the probe server failed'));
    await amqp.close().catch((err: unknown) => logger.warn({ err }, 'closing RabbitMQ failed'));
    await pool.end().catch((err: unknown) => logger.warn({ err }, 'closing PostgreSQL failed'));
    await tracing.shutdown();
  }
  logger.info('outbox publisher stopped');
}

runMain(NAME, main);
