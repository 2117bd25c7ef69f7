/**
 * Entry point of the Temporal worker process: `npm run start:worker`.
 *
 * Reads the configuration once, registers the search attributes, then serves the `orders` task
 * queue until SIGINT/SIGTERM, which drains in-flight tasks before exiting. Serves `/metrics`,
 * `/health` and `/ready` on WORKER_HTTP_PORT; the SDK's own metrics (task slots, poll and activity
 * latencies, sticky cache) are on WORKER_SDK_METRICS_PORT, from the SDK's Prometheus exporter.
 */
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  DefaultLogger,
  NativeConnection,
  Runtime,
  type LogLevel,
  type LogMetadata,
  type Worker,
} from '@temporalio/worker';
import { loadConfig, type Config } from '../lib/config.js';
import { startProbeServer, type ProbeServer } from '../lib/http-probe-server.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { createRegistry } from '../lib/metrics.js';
import { postgresProbe, temporalProbe } from '../lib/probes.js';
import { runMain, waitForShutdownSignal } from '../lib/process.js';
import { startTracing } from '../lib/tracing.js';
import { createPool, poolSettings } from '../db/pool.js';
import { temporalConnectionOptions } from '../lib/temporal.js';
import { ensureSearchAttributes } from '../lib/temporal-namespace.js';
import { bundleInChildProcess } from './bundle-workflows.js';
import { createOrderWorker } from './temporal-worker.js';

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

const PROBE_TIMEOUT_MS = 2_000;

/**
 * The SDK's own logs (and workflow `log` calls) go to the same JSON stream as ours; its metrics to
 * its Prometheus exporter (seconds and `_total` counters, as Prometheus names them), unless the port
 * is 0.
 */
function installRuntime(logger: Logger, config: Config): void {
  const sdk = logger.child({ component: 'temporal-sdk' });
  const host = config.METRICS_HOST.includes(':') ? `[${config.METRICS_HOST}]` : config.METRICS_HOST;
  Runtime.install({
    logger: new DefaultLogger(FROM_CONFIG[config.LOG_LEVEL], ({ level, message, meta }) =>
      sdk[TO_PINO[level]]((meta ?? {}) as LogMetadata, message),
    ),
    ...(config.WORKER_SDK_METRICS_PORT > 0
      ? {
          telemetryOptions: {
            metrics: {
              prometheus: {
                bindAddress: `${host}:${config.WORKER_SDK_METRICS_PORT}`,
                countersTotalSuffix: true,
                unitSuffix: true,
                useSecondsForDurations: true,
              },
            },
          },
        }
      : {}),
    // We handle signals ourselves: shutdown once, then close connections in order.
    shutdownSignals: [],
  });
}

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger('temporal-worker', config.LOG_LEVEL);
  installRuntime(logger, config);
  const tracing = await startTracing(config, 'acme-worker', logger);
  const pool = createPool(config.DATABASE_URL, config.DATABASE_POOL_MAX, 'acme-temporal-worker', {
    ...poolSettings(config),
  });
  const registry = createRegistry();
  let connection: NativeConnection | undefined;
  let worker: Worker | undefined;
  let probes: ProbeServer | undefined;
  try {
    probes = await startProbeServer({
      name: 'temporal-worker',
      host: config.METRICS_HOST,
      port: config.WORKER_HTTP_PORT,
      portSetting: 'WORKER_HTTP_PORT',
      registry,
      checks: {
        postgres: postgresProbe(pool),
        temporal: temporalProbe(() => connection, PROBE_TIMEOUT_MS),
        worker: async () => {
          const state = worker?.getState() ?? 'not created yet';
          if (state !== 'RUNNING') throw new Error(`the worker is ${state}`);
        },
      },
      logger,
    });
    connection = await NativeConnection.connect(temporalConnectionOptions(config));
    await ensureSearchAttributes(connection, config.TEMPORAL_NAMESPACE, logger);
    // Bundled in a child process, so webpack's memory is not the worker's for its whole life.
    const bundlePath = path.join(tmpdir(), `acme-orders-workflows-${process.pid}.js`);
    await bundleInChildProcess(bundlePath, tracing.temporal?.workflowInterceptorModules);
    try {
      worker = await createOrderWorker({
        config,
        pool,
        logger,
        connection,
        registry,
        workflowBundle: { codePath: bundlePath },
        tracing: tracing.temporal,
      });
    } finally {
      await rm(bundlePath, { force: true }); // read by Worker.create
    }
    const running = worker;
    void waitForShutdownSignal().then((signal) => {
      if (running.getState() !== 'RUNNING') return;
      logger.info({ signal }, 'shutting down: draining in-flight tasks');
      running.shutdown();
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
    await probes?.close().catch((err: unknown) => logger.warn({ err }, 'closing the probe server failed'));
    await connection?.close();
    await pool.end();
    await tracing.shutdown();
  }
}

runMain('temporal-worker', main);
