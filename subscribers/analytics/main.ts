/**
 * Entry point of the order-analytics subscriber (`npm run start:analytics`). SIGTERM/SIGINT stop
 * taking messages, let in-flight events commit and ack, then close the connections. Serves
 * `/metrics`, `/health` and `/ready` on ANALYTICS_HTTP_PORT.
 */
import { connectAmqp } from '../../lib/amqp/connection.js';
import { loadConfig } from '../../lib/config.js';
import { startProbeServer, type ProbeServer } from '../../lib/http-probe-server.js';
import { createLogger } from '../../lib/logger.js';
import { createRegistry } from '../../lib/metrics.js';
import { postgresProbe, rabbitmqProbe } from '../../lib/probes.js';
import { runMain, waitForShutdownSignal } from '../../lib/process.js';
import { createPool } from '../../db/pool.js';
import { createAnalyticsSubscriber } from './consumer.js';

const NAME = 'analytics';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(NAME, config.LOG_LEVEL);
  const shutdown = waitForShutdownSignal();
  const pool = createPool(config.DATABASE_URL, config.DATABASE_POOL_MAX, `acme-${NAME}`);
  const amqp = connectAmqp(config, { name: `acme-${NAME}`, logger });
  const registry = createRegistry();
  const subscriber = createAnalyticsSubscriber({ amqp, pool, config, logger, registry });
  let probes: ProbeServer | undefined;
  try {
    probes = await startProbeServer({
      name: NAME,
      host: config.METRICS_HOST,
      port: config.ANALYTICS_HTTP_PORT,
      portSetting: 'ANALYTICS_HTTP_PORT',
      registry,
      checks: { postgres: postgresProbe(pool), rabbitmq: rabbitmqProbe(amqp) },
      logger,
    });
    await Promise.race([subscriber.start(), shutdown]);
    logger.info({ queue: config.ANALYTICS_QUEUE }, 'analytics subscriber started');
    const signal = await shutdown;
    logger.info({ signal }, 'draining: finishing in-flight messages');
    await subscriber.stop();
  } finally {
    await probes?.close().catch((err: unknown) => logger.warn({ err }, 'closing the probe server failed'));
    await amqp.close().catch((err: unknown) => logger.warn({ err }, 'closing RabbitMQ failed'));
    await pool.end().catch((err: unknown) => logger.warn({ err }, 'closing PostgreSQL failed'));
  }
  logger.info('analytics subscriber stopped');
}

runMain(NAME, main);
