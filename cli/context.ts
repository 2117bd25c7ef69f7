/**
 * What a command needs from the outside world, opened only when first asked for (a `dlq` command
 * never connects to Temporal, a `replay` never to RabbitMQ) and closed once the command is done.
 * Settings come from lib/config.ts, the same environment variables the services read.
 */
import type { Client } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import amqplib, { type ChannelModel } from 'amqplib';
import { pino } from 'pino';
import { redactUrl } from '../lib/amqp/connection.js';
import { loadConfig, type Config } from '../lib/config.js';
import { TERMINAL_SAFE, type Logger } from '../lib/logger.js';
import { connectTemporal } from '../lib/temporal.js';
import { MAX_CONCURRENCY } from '../ops/batch.js';
import { createPool, type Pool, poolSettings } from '../db/pool.js';

export interface CliContext {
  config: Config;
  logger: Logger;
  temporal(): Promise<Client>;
  /**
   * Makes the SDK's native runtime quiet, for a command that runs a (replay) worker; call it before
   * the worker. Only such commands may: the runtime keeps the process alive until a worker has run
   * and shut down.
   */
  quietWorkerRuntime(): void;
  amqp(): Promise<ChannelModel>;
  /** PostgreSQL, for the commands that read or change orders (retry, reconcile). */
  pool(): Pool;
  close(): Promise<void>;
}

/**
 * Logs go to stderr, always: stdout carries only the result (human lines, or the JSON alone), so
 * `npm run -s orders -- … --json | jq` sees nothing else. Synchronous, so nothing is lost on exit.
 */
export function createCliLogger(verbose: boolean): Logger {
  return pino(
    {
      name: 'orders-cli',
      level: verbose ? 'debug' : 'warn',
      base: { process: 'orders-cli' },
      hooks: TERMINAL_SAFE,
    },
    pino.destination({ dest: 2, sync: true }),
  );
}

/**
 * `config` defaults to the environment's (tests pass their own queues).
 * @throws ConfigError naming each environment variable to fix.
 */
export function createCliContext({
  verbose,
  config = loadConfig(),
}: {
  verbose: boolean;
  config?: Config;
}): CliContext {
  const logger = createCliLogger(verbose);
  let temporal: Promise<Client> | undefined;
  let amqp: Promise<ChannelModel> | undefined;
  let pool: Pool | undefined;

  return {
    config,
    logger,
    temporal() {
      temporal ??= (async () => {
        try {
          return await connectTemporal(config);
        } catch (err) {
          throw new Error(
            `cannot reach Temporal at ${config.TEMPORAL_ADDRESS} (namespace ${config.TEMPORAL_NAMESPACE}): ` +
              `${(err as Error).message}. Is it running (npm run infra -- up)? Otherwise set TEMPORAL_ADDRESS.`,
            { cause: err },
          );
        }
      })();
      return temporal;
    },
    quietWorkerRuntime: () => quietWorkerRuntime(verbose),
    amqp() {
      amqp ??= (async () => {
        try {
          const connection = await amqplib.connect(config.AMQP_URL, {
            clientProperties: { connection_name: 'orders-cli' },
          });
          connection.on('error', (err: Error) =>
            logger.warn({ err: err.message }, 'RabbitMQ connection error'),
          );
          return connection;
        } catch (err) {
          throw new Error(
            `cannot reach RabbitMQ at ${redactUrl(config.AMQP_URL)}: ${(err as Error).message}. ` +
              'Is it running (npm run infra -- up)? Otherwise set AMQP_URL.',
            { cause: err },
          );
        }
      })();
      return amqp;
    },
    pool() {
      // One connection per order in flight at most (--concurrency); opened only as lanes need them.
      pool ??= createPool(config.DATABASE_URL, MAX_CONCURRENCY, 'acme-orders-cli', poolSettings(config));
      return pool;
    },
    async close() {
      const closing: Array<Promise<unknown>> = [];
      if (pool) closing.push(pool.end());
      if (temporal) closing.push(temporal.then((client) => client.connection.close()));
      if (amqp) closing.push(amqp.then((connection) => connection.close()));
      // A connection that never opened has nothing to close; its error was reported already.
      await Promise.allSettled(closing);
    },
  };
}

/**
 * The SDK's native runtime logs its own warnings to stderr, such as the "Failing workflow task" a
 * replay mismatch causes, which the result reports anyway: without --verbose, only errors.
 * Installed once per process, before anything creates it.
 */
function quietWorkerRuntime(verbose: boolean): void {
  const level = verbose ? 'INFO' : 'ERROR';
  try {
    Runtime.install({
      logger: new DefaultLogger(level),
      // Core logs straight to stderr: forwarding them to the JS logger would poll for them and keep
      // the process alive after a command that ended without running a worker.
      telemetryOptions: { logging: { filter: { core: level, other: level }, console: {} } },
    });
  } catch {
    // already installed: keep it
  }
}
