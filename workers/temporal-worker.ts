/**
 * The Temporal worker for the order saga: bundles workflows/ and serves the saga's activities on
 * the task queue. `createOrderWorker` wires real dependencies; tests call it too, with a test
 * database, their own task queue, and (for fault branches) an injected gateway or activity.
 */
import { Worker, type NativeConnection, type WorkflowBundleOption } from '@temporalio/worker';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import type { TemporalTracing } from '../lib/tracing.js';
import type { Registry } from '../lib/metrics.js';
import type { Pool } from '../db/pool.js';
import { createActivities, type Activities } from '../activities/index.js';
import {
  createSimulatedGateway,
  withCallTimeout,
  type PaymentGateway,
} from '../activities/payment-gateway.js';
import { WORKFLOWS_PATH } from './bundle-workflows.js';

/** The bundle's entry: the SDK's bundler compiles the TypeScript (and maps `.js` imports to `.ts`). */
export { WORKFLOWS_PATH };

export interface OrderWorkerOptions {
  config: Config;
  pool: Pool;
  logger: Logger;
  /** Owned by the caller (opened in main(), closed in its finally), so one process can share it. */
  connection: NativeConnection;
  /** Defaults to config.TEMPORAL_TASK_QUEUE; tests use a unique queue each. */
  taskQueue?: string;
  /** Defaults to the simulated gateway configured by PAYMENT_* settings. */
  gateway?: PaymentGateway;
  /** Replaces single activities, for tests of fault branches (a compensation that fails). */
  activityOverrides?: Partial<Activities>;
  /** A prebuilt bundle (bundleWorkflowCode) instead of bundling WORKFLOWS_PATH again; tests reuse one. */
  workflowBundle?: WorkflowBundleOption;
  /** The process's metrics registry, for the activities' metrics; default: one nobody scrapes. */
  registry?: Registry;
  /**
   * Tracing on: activity spans and the workflow-span sink. A prebuilt `workflowBundle` must then
   * include `tracing.workflowInterceptorModules` (bundleInChildProcess does).
   */
  tracing?: TemporalTracing | undefined;
}

export async function createOrderWorker(options: OrderWorkerOptions): Promise<Worker> {
  const { config, pool, logger, connection } = options;
  // Every call bounded, whichever gateway is wired (an injected one in tests included).
  const gateway = withCallTimeout(
    options.gateway ?? createSimulatedGateway(config),
    config.PAYMENT_GATEWAY_TIMEOUT_MS,
  );
  const activities = {
    ...createActivities({
      pool,
      gateway,
      logger,
      ...(options.registry ? { registry: options.registry } : {}),
    }),
    ...options.activityOverrides,
  };
  const traced = options.tracing?.workerOptions();
  const workflowModules = options.workflowBundle ? [] : (options.tracing?.workflowInterceptorModules ?? []);
  return Worker.create({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: options.taskQueue ?? config.TEMPORAL_TASK_QUEUE,
    ...(options.workflowBundle
      ? { workflowBundle: options.workflowBundle }
      : { workflowsPath: WORKFLOWS_PATH }),
    ...(traced ? { sinks: traced.sinks, interceptors: { ...traced.interceptors, workflowModules } } : {}),
    activities,
    ...WORKER_TUNING(config),
    // On SIGTERM, in-flight activities get this long to finish before they are cancelled (and retried
    // elsewhere); they are short database steps and a gateway call.
    shutdownGraceTime: '10 seconds',
  });
}

/**
 * Worker tuning, measured with `npm run bench` (README "Performance"): a bounded sticky cache keeps
 * the worker's memory flat under a backlog (the SDK's default grows with the heap size).
 */
const WORKER_TUNING = (config: Config) => ({
  maxCachedWorkflows: config.WORKER_MAX_CACHED_WORKFLOWS,
});
