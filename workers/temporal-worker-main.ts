/**
 * Entry point of the Temporal worker process: `npm run start:worker`.
 *
 * Reads the configuration once, registers the search attributes, then serves the `orders` task
 * queue until SIGINT/SIGTERM, which drains in-flight tasks before exiting.
 */
import {
  DefaultLogger,
  NativeConnection,
  Runtime,
  type LogLevel,
  type LogMetadata,
} from '@temporalio/worker';
import { loadConfig, type Config } from '../lib/config.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { runMain, waitForShutdownSignal } from '../lib/process.js';
import { createPool } from '../db/pool.js';
import { createOrderWorker, ensureSearchAttributes } from './temporal-worker.js';

type PinoMethod = 'trace' | 'debug' | 'info' | 'warn' | 'error';
const TO_PINO: Record<LogLevel, PinoMethod> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};
const FROM_CONFIG: Record<Config['LOG_LEVEL'], LogLevel> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARN',
  error: 'ERROR',
  fatal: 'ERROR',
  silent: 'ERROR',
};

/** The SDK's own logs (and workflow `log` calls) go to the same JSON stream as ours. */
function installRuntime(logger: Logger, level: Config['LOG_LEVEL']): void {
  const sdk = logger.child({ component: 'temporal-sdk' });
  Runtime.install({
    logger: new DefaultLogger(FROM_CONFIG[level], ({ level, message, meta }) =>
      sdk[TO_PINO[level]]((meta ?? {}) as LogMetadata, message),
    ),
    // We handle signals ourselves: shutdown once, then close connections in order.
    shutdownSignals: [],
  });
}

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger('temporal-worker', config.LOG_LEVEL);
  installRuntime(logger, config.LOG_LEVEL);
  const pool = createPool(config.DATABASE_URL, config.DATABASE_POOL_MAX, 'acme-temporal-worker');
  let connection: NativeConnection | undefined;
  try {
    connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
    await ensureSearchAttributes(connection, config.TEMPORAL_NAMESPACE, logger);
    const worker = await createOrderWorker({ config, pool, logger, connection });
    void waitForShutdownSignal().then((signal) => {
      if (worker.getState() !== 'RUNNING') return;
      logger.info({ signal }, 'shutting down: draining in-flight tasks');
      worker.shutdown();
    });
    logger.info(
      {
        taskQueue: config.TEMPORAL_TASK_QUEUE,
        namespace: config.TEMPORAL_NAMESPACE,
        address: config.TEMPORAL_ADDRESS,
      },
      'temporal worker running',
    );
    await worker.run();
    logger.info('temporal worker stopped');
  } finally {
    await connection?.close();
    await pool.end();
  }
}

runMain('temporal-worker', main);
