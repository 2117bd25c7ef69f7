/**
 * What every subscriber's entry point does the same way: read the configuration once, connect, serve
 * `/metrics`, `/health` and `/ready` on its own port, consume until SIGTERM/SIGINT, then stop taking
 * messages, let in-flight ones commit and ack, and close the connections.
 */
import { connectAmqp, type AmqpConnectionManager } from '../lib/amqp/connection.js';
import type { QueueConsumer } from '../lib/amqp/consumer.js';
import { loadConfig, type Config } from '../lib/config.js';
import { startProbeServer, type ProbeServer } from '../lib/http-probe-server.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { createRegistry, type Registry } from '../lib/metrics.js';
import { postgresProbe, rabbitmqProbe } from '../lib/probes.js';
import { runMain, waitForShutdownSignal } from '../lib/process.js';
import { startTracing } from '../lib/tracing.js';
import { createPool, type Pool, poolSettings } from '../db/pool.js';

export interface SubscriberProcess {
  /** The process's name in logs, connection names (`acme-<name>`) and traces. */
  name: string;
  /** The setting holding the port of its probe server. */
  portSetting: 'LOYALTY_HTTP_PORT' | 'ANALYTICS_HTTP_PORT';
  /** The setting holding its queue, for the start-up line. */
  queueSetting: 'LOYALTY_QUEUE' | 'ANALYTICS_QUEUE';
  create(deps: {
    amqp: AmqpConnectionManager;
    pool: Pool;
    config: Config;
    logger: Logger;
    registry: Registry;
  }): QueueConsumer;
}

export function runSubscriber(process: SubscriberProcess): void {
  runMain(process.name, () => main(process));
}

async function main({ name, portSetting, queueSetting, create }: SubscriberProcess): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(name, config.LOG_LEVEL);
  const tracing = await startTracing(config, `acme-${name}`, logger);
  const shutdown = waitForShutdownSignal();
  const pool = createPool(config.DATABASE_URL, config.DATABASE_POOL_MAX, `acme-${name}`, {
    ...poolSettings(config),
  });
  const amqp = connectAmqp(config, { name: `acme-${name}`, logger });
  const registry = createRegistry();
  const subscriber = create({ amqp, pool, config, logger, registry });
  let probes: ProbeServer | undefined;
  try {
    probes = await startProbeServer({
      name,
      host: config.METRICS_HOST,
      port: config[portSetting],
      portSetting,
      registry,
      checks: { postgres: postgresProbe(pool), rabbitmq: rabbitmqProbe(amqp) },
      logger,
    });
    await Promise.race([subscriber.start(), shutdown]);
    logger.info({ queue: config[queueSetting] }, `${name} subscriber started`);
    const signal = await shutdown;
    logger.info({ signal }, 'draining: finishing in-flight messages');
    await subscriber.stop();
  } finally {
    await probes?.close().catch((err: unknown) => logger.warn({ err }, 'closing the probe server failed'));
    await amqp.close().catch((err: unknown) => logger.warn({ err }, 'closing RabbitMQ failed'));
    await pool.end().catch((err: unknown) => logger.warn({ err }, 'closing PostgreSQL failed'));
    await tracing.shutdown();
  }
  logger.info(`${name} subscriber stopped`);
}
