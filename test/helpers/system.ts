/**
 * The whole system in one process, for end-to-end and fault tests: the API (in-process, called with
 * `app.request`), the outbox publisher, the bridge and the Temporal worker, over a fresh database
 * and this test's own exchange, queues and task queue on the real servers.
 */
import { type Client } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import amqplib from 'amqplib';
import { expect } from 'vitest';
import { createApp } from '../../api/app.js';
import { createTemporalOrderWorkflows } from '../../api/order-workflows.js';
import type { Activities } from '../../activities/index.js';
import type { PaymentGateway } from '../../activities/payment-gateway.js';
import { connectAmqp, type AmqpConnectionManager } from '../../lib/amqp/connection.js';
import type { Config } from '../../lib/config.js';
import { startProbeServer, type ProbeServer } from '../../lib/http-probe-server.js';
import { createRegistry, type Registry } from '../../lib/metrics.js';
import { postgresProbe, rabbitmqProbe, temporalProbe } from '../../lib/probes.js';
import { connectTemporal } from '../../lib/temporal.js';
import type { TemporalTracing } from '../../lib/tracing.js';
import { createBridge } from '../../workers/bridge.js';
import { OutboxPublisher } from '../../workers/outbox-publisher.js';
import { createOrderWorker } from '../../workers/temporal-worker.js';
import { FINAL_STATUSES, type OrderStatus } from '../../domain/order.js';
import { captureLogger, deleteTopology, shortId, testConfig, waitFor } from './amqp.js';
import { asCaller, bearer, testAuth, type TestAuth } from './auth.js';
import { createTestDatabase, type TestDatabase } from './db.js';

export interface OrderView {
  id: string;
  status: OrderStatus;
  statusReason: string | null;
  correlationId: string;
  total: string;
  notifications: Array<{ kind: string }>;
  events: Array<{ type: string; published: boolean }>;
}

export interface TestSystem {
  db: TestDatabase;
  config: Config;
  temporal: Client;
  /** The API as an operator calls it (every request carries an operator token unless it sets its own). */
  app: ReturnType<typeof createApp>;
  /** The test process's key pair, for tokens of other callers (customers, forged ones). */
  auth: TestAuth;
  /** What the bridge logged, for asserting on its decisions. */
  bridgeLog: Array<Record<string, unknown>>;
  /** Each component's metrics registry, as if each ran in a process of its own. */
  registries: Record<'api' | 'outbox' | 'bridge' | 'worker', Registry>;
  /** With `probeServers: true`: each process's probe server (lib/http-probe-server.ts) on a free port. */
  probes?: Record<'outbox' | 'bridge' | 'worker', ProbeServer>;
  placeOrder(
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: { id: string; status: string } }>;
  getOrder(id: string): Promise<OrderView>;
  waitForFinal(id: string, timeoutMs?: number): Promise<OrderView>;
  stop(): Promise<void>;
}

export async function startSystem(
  overrides: Record<string, string> = {},
  {
    gateway,
    activityOverrides,
    probeServers = false,
    tracing,
  }: {
    gateway?: PaymentGateway;
    /** Replaces single activities in the worker, for a step that fails (a bad deploy of it). */
    activityOverrides?: Partial<Activities>;
    probeServers?: boolean;
    /** Tracing on (lib/tracing-sdk.ts): Temporal's interceptors in the bridge's client and the worker. */
    tracing?: TemporalTracing;
  } = {},
): Promise<TestSystem> {
  const db = await createTestDatabase();
  const config = testConfig(shortId(), { DATABASE_URL: db.url, ...overrides });
  const { logger } = captureLogger('warn');
  const bridgeCapture = captureLogger('info');

  const amqp: AmqpConnectionManager = connectAmqp(config, {
    name: `test-system-${config.AMQP_EXCHANGE}`,
    logger,
  });
  const registries = {
    api: createRegistry({ defaultMetrics: false }),
    outbox: createRegistry({ defaultMetrics: false }),
    bridge: createRegistry({ defaultMetrics: false }),
    worker: createRegistry({ defaultMetrics: false }),
  };
  const publisher = new OutboxPublisher({ pool: db.pool, amqp, config, logger, registry: registries.outbox });
  publisher.start();
  const temporal = await connectTemporal(config, { tracing });
  const bridge = createBridge({
    amqp,
    temporal,
    pool: db.pool,
    config,
    logger: bridgeCapture.logger,
    registry: registries.bridge,
  });
  await bridge.start();
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const worker: Worker = await createOrderWorker({
    config,
    pool: db.pool,
    logger,
    connection,
    registry: registries.worker,
    ...(gateway ? { gateway } : {}),
    ...(activityOverrides ? { activityOverrides } : {}),
    tracing,
  });
  const workerRun = worker.run();
  const auth = await testAuth();
  const app = asCaller(
    createApp({
      pool: db.pool,
      logger,
      workflows: createTemporalOrderWorkflows(temporal, { timeoutMs: 5000 }),
      config,
      checks: {},
      registry: registries.api,
      authenticator: auth.authenticator,
    }),
    await auth.operatorToken(),
  );
  let probes: TestSystem['probes'];
  if (probeServers) {
    const serve = (
      name: string,
      registry: Registry,
      checks: Parameters<typeof startProbeServer>[0]['checks'],
    ) => startProbeServer({ name, host: '127.0.0.1', port: 0, registry, checks, logger });
    const postgres = postgresProbe(db.pool);
    const rabbitmq = rabbitmqProbe(amqp);
    probes = {
      outbox: await serve('outbox', registries.outbox, { postgres, rabbitmq }),
      bridge: await serve('bridge', registries.bridge, {
        postgres,
        rabbitmq,
        temporal: temporalProbe(temporal.connection, 2_000),
      }),
      worker: await serve('worker', registries.worker, {
        postgres,
        temporal: temporalProbe(connection, 2_000),
        worker: async () => {
          if (worker.getState() !== 'RUNNING') throw new Error(`the worker is ${worker.getState()}`);
        },
      }),
    };
  }

  const getOrder = async (id: string): Promise<OrderView> => {
    const res = await app.request(`/orders/${id}`);
    expect(res.status).toBe(200);
    return (await res.json()) as OrderView;
  };

  return {
    db,
    config,
    temporal,
    app,
    auth,
    bridgeLog: bridgeCapture.lines,
    registries,
    ...(probes ? { probes } : {}),
    async placeOrder(body, headers = {}) {
      // As the customer the body names (a customer orders as itself), else as the operator.
      const customerId = (body as { customer_id?: unknown } | null)?.customer_id;
      const caller = typeof customerId === 'string' ? bearer(await auth.customerToken(customerId)) : {};
      const res = await app.request('/orders', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...caller, ...headers },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as { id: string; status: string } };
    },
    getOrder,
    waitForFinal(id, timeoutMs = 30_000) {
      return waitFor(
        async () => {
          const order = await getOrder(id);
          return FINAL_STATUSES.has(order.status) ? order : undefined;
        },
        { timeoutMs, intervalMs: 100, what: `order ${id} to reach a final status` },
      );
    },
    async stop() {
      for (const server of Object.values(probes ?? {})) await server.close();
      worker.shutdown();
      await workerRun;
      await bridge.stop();
      await publisher.stop();
      await amqp.close();
      await connection.close();
      await temporal.connection.close();
      const admin = await amqplib.connect(config.AMQP_URL);
      // The subscribers' queues too: a test that runs one on this system (tracing's loyalty) would
      // otherwise leave it and its DLQ on the shared broker, one pair per run.
      await deleteTopology(admin, config.AMQP_EXCHANGE, [
        config.BRIDGE_QUEUE,
        config.LOYALTY_QUEUE,
        config.ANALYTICS_QUEUE,
      ]);
      await admin.close();
      await db.drop();
    },
  };
}
