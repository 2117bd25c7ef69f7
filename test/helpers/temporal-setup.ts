/**
 * Runs before the integration project: makes sure the tests' namespace exists (TEST_NAMESPACE, unless
 * TEMPORAL_NAMESPACE names another) and registers the saga's custom search attributes on it, as the
 * worker process does at start (workers/temporal-worker-main.ts). Tests build their workers with
 * `createOrderWorker` alone, and a saga that upserts an attribute the namespace lacks would fail its
 * workflow task.
 */
import { msToTs } from '@temporalio/common/lib/time.js';
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { ensureSearchAttributes } from '../../workers/temporal-worker.js';
import { TEST_NAMESPACE } from './temporal-namespace.js';

const NOT_FOUND = 5; // gRPC status codes
const ALREADY_EXISTS = 6;
const code = (err: unknown) => (err as { code?: number }).code;

export default async function setup(): Promise<void> {
  const config = loadConfig({
    ...process.env,
    TEMPORAL_NAMESPACE: process.env.TEMPORAL_NAMESPACE ?? TEST_NAMESPACE,
  });
  const namespace = config.TEMPORAL_NAMESPACE;
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    await ensureNamespace(connection, namespace);
    await ensureSearchAttributes(connection, namespace, createLogger('test-setup', 'warn'));
  } finally {
    await connection.close();
  }
}

/** Registers `namespace` (one day's retention) if the server lacks it, then waits until it serves it. */
async function ensureNamespace(connection: NativeConnection, namespace: string): Promise<void> {
  const service = connection.workflowService;
  try {
    await service.describeNamespace({ namespace });
    return;
  } catch (err) {
    if (code(err) !== NOT_FOUND) throw err;
  }
  try {
    await service.registerNamespace({
      namespace,
      description: 'the integration tests (test/helpers/temporal-namespace.ts)',
      workflowExecutionRetentionPeriod: msToTs('1 day'),
    });
  } catch (err) {
    if (code(err) !== ALREADY_EXISTS) throw err;
  }
  // A server caches its namespaces and refreshes them every few seconds: wait until this one is served.
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await service.listWorkflowExecutions({ namespace, pageSize: 1 });
      return;
    } catch (err) {
      if (code(err) !== NOT_FOUND || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}
