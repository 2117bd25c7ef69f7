/**
 * Runs before the integration project: registers the saga's custom search attributes on the dev
 * server's namespace, as the worker process does at start (workers/temporal-worker-main.ts). Tests
 * build their workers with `createOrderWorker` alone, and a saga that upserts an attribute the
 * namespace lacks (FailureReason was added after servers were started) would fail its workflow task.
 */
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { ensureSearchAttributes } from '../../workers/temporal-worker.js';

export default async function setup(): Promise<void> {
  const config = loadConfig();
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    await ensureSearchAttributes(connection, config.TEMPORAL_NAMESPACE, createLogger('test-setup', 'warn'));
  } finally {
    await connection.close();
  }
}
