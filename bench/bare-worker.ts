/**
 * The bench's bare worker process: serves the bare baseline workflows (bench/workflows/) with no-op
 * activities, built by the same `createOrderWorker` as the real worker
 * (workers/temporal-worker-main.ts), so both run with the same worker settings; only the workflow
 * bundle and the activities differ. Started and stopped by `npm run bench` (bench/pipeline.ts).
 */
import { fileURLToPath } from 'node:url';
import { DefaultLogger, NativeConnection, Runtime, bundleWorkflowCode } from '@temporalio/worker';
import { createActivities } from '../activities/index.js';
import { loadConfig } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { runMain, waitForShutdownSignal } from '../lib/process.js';
import { createPool } from '../db/pool.js';
import { createOrderWorker } from '../workers/temporal-worker.js';
import * as bareActivities from './workflows/activities.js';

const WORKFLOWS_PATH = fileURLToPath(new URL('./workflows/index.ts', import.meta.url));

type Activities = ReturnType<typeof createActivities>;

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger('bench-bare-worker', config.LOG_LEVEL);
  Runtime.install({ logger: new DefaultLogger('WARN'), shutdownSignals: [] });
  // The real activities are built (and replaced by the no-op ones of the same names); the pool never
  // connects, since no real activity runs.
  const pool = createPool(config.DATABASE_URL, 1, 'acme-bench-bare-worker');
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    const workflowBundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH });
    const worker = await createOrderWorker({
      config,
      pool,
      logger,
      connection,
      workflowBundle,
      activityOverrides: bareActivities as unknown as Partial<Activities>,
    });
    void waitForShutdownSignal().then(() => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
    });
    logger.info({ taskQueue: config.TEMPORAL_TASK_QUEUE }, 'bare worker running');
    await worker.run();
  } finally {
    await connection.close();
    await pool.end();
  }
}

runMain('bench-bare-worker', main);
