/**
 * The Temporal client side, shared by the bridge (starts sagas) and the API (cancels, links).
 * One client per process, created in `main()` and closed on shutdown; never one per request.
 */
import { readFileSync } from 'node:fs';
import { Client, Connection, ServiceError, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { TypedSearchAttributes, WorkflowNotFoundError } from '@temporalio/common';
import type { Config } from './config.js';
import type { TemporalTracing } from './tracing.js';
import type { OrderStatus } from '../domain/order.js';
import {
  SEARCH_ATTRIBUTES,
  SETTLE_WORKFLOW_TYPE,
  WORKFLOW_TYPE,
  orderWorkflowId,
  type OrderSagaInput,
  type SettleOrderInput,
} from '../workflows/contract.js';

/**
 * `lazy`: connect on the first call instead of now, for a process that must start (and do its other
 * work) while Temporal is down, like the API, whose orders need only PostgreSQL.
 * `retries: false`: no client-side retries of failed calls, for a caller that answers a failure
 * itself (the API's 503). The SDK schedules those retries on timers that closing the connection
 * does not cancel; one firing after shutdown throws from the timer and crashes the process.
 */
export type TemporalConnectionConfig = Pick<
  Config,
  | 'TEMPORAL_ADDRESS'
  | 'TEMPORAL_TLS_CERT_FILE'
  | 'TEMPORAL_TLS_KEY_FILE'
  | 'TEMPORAL_TLS_CA_FILE'
  | 'TEMPORAL_TLS_SERVER_NAME'
  | 'TEMPORAL_API_KEY'
>;

/**
 * Address, TLS and API key for `Connection` (clients) and `NativeConnection` (the worker), from
 * config: plain TCP unless a client certificate, a CA or an API key is configured. The files are read
 * here, once, when the process connects.
 */
export function temporalConnectionOptions(
  config: Partial<TemporalConnectionConfig> & Pick<Config, 'TEMPORAL_ADDRESS'>,
) {
  const { TEMPORAL_TLS_CERT_FILE: cert, TEMPORAL_TLS_KEY_FILE: key, TEMPORAL_TLS_CA_FILE: ca } = config;
  const tls =
    cert || ca || config.TEMPORAL_API_KEY || config.TEMPORAL_TLS_SERVER_NAME
      ? {
          ...(config.TEMPORAL_TLS_SERVER_NAME ? { serverNameOverride: config.TEMPORAL_TLS_SERVER_NAME } : {}),
          ...(ca ? { serverRootCACertificate: readFileSync(ca) } : {}),
          ...(cert && key ? { clientCertPair: { crt: readFileSync(cert), key: readFileSync(key) } } : {}),
        }
      : undefined;
  return {
    address: config.TEMPORAL_ADDRESS,
    ...(tls ? { tls } : {}),
    ...(config.TEMPORAL_API_KEY ? { apiKey: config.TEMPORAL_API_KEY } : {}),
  };
}

export async function connectTemporal(
  config: Pick<Config, 'TEMPORAL_ADDRESS' | 'TEMPORAL_NAMESPACE'> & Partial<TemporalConnectionConfig>,
  {
    lazy = false,
    retries = true,
    tracing,
  }: { lazy?: boolean; retries?: boolean; tracing?: TemporalTracing | undefined } = {},
): Promise<Client> {
  const options = { ...temporalConnectionOptions(config), ...(retries ? {} : { interceptors: [] }) };
  const connection = lazy ? Connection.lazy(options) : await Connection.connect(options);
  return new Client({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    // Tracing on: the start call's span goes to the workflow in its headers.
    ...(tracing ? { interceptors: tracing.clientInterceptors() } : {}),
  });
}

export type StartOutcome = 'started' | 'already-started';

/** Order sagas running on `taskQueue`, as Temporal's visibility counts them (the bridge's window). */
export async function countRunningSagas(client: Client, taskQueue: string): Promise<number> {
  const query = `WorkflowType = '${WORKFLOW_TYPE}' AND TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running'`;
  return (await client.workflow.count(query)).count;
}

/**
 * Starts run `input.run` (default 1) of `order-<id>`. Each run is started once:
 * - run 1 with reject-duplicate: a second start (a duplicate `order.placed`) is refused by the server;
 * - a retry's run (2, 3, …) as a new execution of the same workflow id, next to the earlier ones in
 *   the Web UI, unless the latest execution already is that run (its memo says which run it is) or
 *   one is still open.
 * A refused second start is reported as 'already-started', which callers treat as success.
 */
export async function startOrderSaga(
  client: Client,
  input: OrderSagaInput,
  taskQueue: string,
  /** One line the Web UI shows for the run (e.g. customer, items, total); no personal data. */
  summary?: string,
): Promise<StartOutcome> {
  const run = input.run ?? 1;
  const workflowId = orderWorkflowId(input.orderId);
  if (run > 1 && ((await latestOrderRun(client, input.orderId))?.run ?? 0) >= run) return 'already-started';
  try {
    await client.workflow.start(WORKFLOW_TYPE, {
      workflowId,
      taskQueue,
      args: [input],
      // A finished saga is never restarted by a redelivered message; a retry is a deliberate act,
      // and even then never beside a run that is still open.
      workflowIdReusePolicy: run === 1 ? 'REJECT_DUPLICATE' : 'ALLOW_DUPLICATE',
      workflowIdConflictPolicy: 'FAIL',
      typedSearchAttributes: new TypedSearchAttributes([
        { key: SEARCH_ATTRIBUTES.OrderId, value: input.orderId },
        { key: SEARCH_ATTRIBUTES.CustomerId, value: input.customerId },
        { key: SEARCH_ATTRIBUTES.OrderStatus, value: 'PENDING' },
      ]),
      memo: { correlationId: input.correlationId, run },
      ...(summary ? { staticSummary: summary } : {}),
    });
    return 'started';
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    if (run === 1) return 'already-started';
    // For a retry's run, the open execution may be an earlier run still ending: not this run.
    const open = await latestOrderRun(client, input.orderId);
    if (open === undefined || open.run === run) return 'already-started';
    throw new EarlierRunStillOpenError(input.orderId, open.run, run);
  }
}

/**
 * Starts a settlement of the order (workflows/settle-order.ts) under its own workflow id `order-<id>`,
 * next to its saga's runs in the Web UI, and answers its run id. Never beside an open execution
 * (conflict: fail); `ops/settle.ts` decides whether the order may be settled. The memo names the run it
 * settles, as a saga run's does, so `latestOrderRun` reads it the same way (a retry then starts the
 * next run).
 */
export async function startSettlement(
  client: Client,
  input: SettleOrderInput,
  {
    taskQueue,
    customerId,
    status,
    settles,
  }: {
    taskQueue: string;
    customerId: string;
    status: OrderStatus;
    /** The saga run it settles (`LatestRun.sagaRunId`), when Temporal still has it. */
    settles?: string | undefined;
  },
): Promise<{ runId: string }> {
  const handle = await client.workflow.start(SETTLE_WORKFLOW_TYPE, {
    workflowId: orderWorkflowId(input.orderId),
    taskQueue,
    args: [input],
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    workflowIdConflictPolicy: 'FAIL',
    typedSearchAttributes: new TypedSearchAttributes([
      { key: SEARCH_ATTRIBUTES.OrderId, value: input.orderId },
      { key: SEARCH_ATTRIBUTES.CustomerId, value: customerId },
      { key: SEARCH_ATTRIBUTES.OrderStatus, value: status },
    ]),
    memo: {
      correlationId: input.correlationId,
      run: input.run,
      settlement: true,
      ...(settles ? { settles } : {}),
    },
    staticSummary: `settlement of run ${input.run}: ${input.reason}`,
  });
  return { runId: handle.firstExecutionRunId };
}

/**
 * A retry's run cannot start while an earlier run of the order is still open (it is ending, e.g. a
 * stale run failing its first step): the start is tried again later, not counted as done.
 */
export class EarlierRunStillOpenError extends Error {
  override name = 'EarlierRunStillOpenError';
  constructor(orderId: string, openRun: number, run: number) {
    super(`order ${orderId}: run ${openRun} is still open; run ${run} starts once it has ended`);
  }
}

/** What Temporal knows of an order's latest run. */
export interface LatestRun {
  /** The saga run it is (its memo; runs started before runs were numbered are run 1). */
  run: number;
  /** Still running: nothing else may be started for the order meanwhile. */
  open: boolean;
  /** The execution status, e.g. RUNNING, COMPLETED, FAILED, TERMINATED. */
  status: string;
  runId: string;
  /** A settlement (`orders settle`), not a run of the saga: it runs no step of the order's run. */
  settlement: boolean;
  /**
   * The saga run this execution is, or, for a settlement (`orders settle`), the saga run it settled
   * (its memo's `settles`; undefined when Temporal had already forgotten that run).
   */
  sagaRunId: string | undefined;
}

/** The order's latest run, or undefined when Temporal has none (never started, or forgotten). */
export async function latestOrderRun(client: Client, orderId: string): Promise<LatestRun | undefined> {
  try {
    const description = await client.workflow.getHandle(orderWorkflowId(orderId)).describe();
    const { run, settlement, settles } = description.memo ?? {};
    return {
      run: typeof run === 'number' ? run : 1,
      open: description.status.name === 'RUNNING',
      status: description.status.name,
      runId: description.runId,
      settlement: settlement === true,
      sagaRunId:
        settlement === true ? (typeof settles === 'string' ? settles : undefined) : description.runId,
    };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
}

/** Link to the order's workflow in the Temporal Web UI. */
export function workflowUiUrl(
  config: Pick<Config, 'TEMPORAL_UI_URL' | 'TEMPORAL_NAMESPACE'>,
  orderId: string,
): string {
  const base = config.TEMPORAL_UI_URL.replace(/\/$/, '');
  return `${base}/namespaces/${encodeURIComponent(config.TEMPORAL_NAMESPACE)}/workflows/${encodeURIComponent(orderWorkflowId(orderId))}`;
}

/**
 * The gRPC status code of a failed Temporal call: on the error itself (the native connection's
 * services) or on its cause (the client's ServiceError).
 */
export function grpcCode(err: unknown): unknown {
  return (err as { code?: unknown }).code ?? (err as { cause?: { code?: unknown } }).cause?.code;
}

/** gRPC codes that mean "Temporal did not answer" (not "Temporal said no"): worth waiting out. */
const UNAVAILABLE_CODES = new Set([
  4, // DEADLINE_EXCEEDED: no answer within our deadline
  8, // RESOURCE_EXHAUSTED: rate limited
  14, // UNAVAILABLE: not reachable, restarting
]);

/**
 * True when a client call failed because Temporal was unreachable or overloaded, not because of the
 * call (or a retry's run must wait for an earlier one to end): worth waiting out.
 */
export function isTemporalUnavailable(err: unknown): boolean {
  if (err instanceof EarlierRunStillOpenError) return true;
  if (!(err instanceof ServiceError)) return false;
  const code = (err.cause as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' && UNAVAILABLE_CODES.has(code);
}
