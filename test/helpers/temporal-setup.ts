/**
 * Runs before the integration project: makes sure the tests' namespace exists (TEST_NAMESPACE, unless
 * TEMPORAL_NAMESPACE names another) and registers the saga's custom search attributes on it, as the
 * worker process does at start (workers/temporal-worker-main.ts). Tests build their workers with
 * `createOrderWorker` alone, and a saga that upserts an attribute the namespace lacks would fail its
 * workflow task.
 */
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { ensureNamespace, ensureSearchAttributes } from '../../lib/temporal-namespace.js';
import { TEST_NAMESPACE } from './temporal-namespace.js';

export default async function setup(): Promise<void> {
  const config = loadConfig({
    ...process.env,
    TEMPORAL_NAMESPACE: process.env.TEMPORAL_NAMESPACE ?? TEST_NAMESPACE,
  });
  const namespace = config.TEMPORAL_NAMESPACE;
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    await ensureNamespace(connection, namespace, {
      description: 'the integration tests (test/helpers/temporal-namespace.ts)',
      retention: '1 day',
    });
    await ensureSearchAttributes(connection, namespace, createLogger('test-setup', 'warn'));
  } finally {
    await connection.close();
  }
}
