/**
 * Entry point of the outbox publisher (`npm run start:outbox`). Run as many as you like: they share
 * the outbox through `for update skip locked`. SIGTERM/SIGINT finish the current batch, then exit.
 */
import { connectAmqp } from '../lib/amqp.js';
import { loadConfig } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { createPool } from '../db/pool.js';
import { OutboxPublisher } from './outbox-publisher.js';

const NAME = 'outbox-publisher';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(NAME, config.LOG_LEVEL);
  // One batch transaction at a time, plus headroom for a batch racing a shutdown.
  const pool = createPool(config.DATABASE_URL, Math.min(config.DATABASE_POOL_MAX, 4), `acme-${NAME}`);
  const amqp = connectAmqp(config, { name: `acme-${NAME}`, logger });
  const publisher = new OutboxPublisher({ pool, amqp, config, logger });
  try {
    publisher.start();
    logger.info(
      { exchange: config.AMQP_EXCHANGE, batchSize: config.OUTBOX_BATCH_SIZE },
      'outbox publisher started',
    );
    const signal = await waitForShutdownSignal();
    logger.info({ signal }, 'draining: finishing the current batch');
    await publisher.stop();
  } finally {
    await amqp.close().catch((err: unknown) => logger.warn({ err }, 'closing RabbitMQ failed'));
    await pool.end().catch((err: unknown) => logger.warn({ err }, 'closing PostgreSQL failed'));
  }
  logger.info('outbox publisher stopped');
}

/** The first SIGINT/SIGTERM starts a drain; a second one exits at once. */
function waitForShutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let draining = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (draining) process.exit(1);
      draining = true;
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

main().catch((err: unknown) => {
  createLogger(NAME).fatal({ err }, 'outbox publisher failed');
  process.exit(1);
});
