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
import type { PaymentGateway } from '../../activities/payment-gateway.js';
import { connectAmqp, type AmqpConnectionManager } from '../../lib/amqp.js';
import type { Config } from '../../lib/config.js';
import { connectTemporal } from '../../lib/temporal.js';
import { createBridge } from '../../workers/bridge.js';
import { OutboxPublisher } from '../../workers/outbox-publisher.js';
import { createOrderWorker } from '../../workers/temporal-worker.js';
import { FINAL_STATUSES, type OrderStatus } from '../../domain/order.js';
import { captureLogger, deleteTopology, shortId, testConfig, waitFor } from './amqp.js';
import { createTestDatabase, type TestDatabase } from './db.js';

export interface OrderView {
  id: string;
  status: OrderStatus;
  correlationId: string;
  total: string;
  notifications: Array<{ kind: string }>;
  events: Array<{ type: string; published: boolean }>;
}

export interface TestSystem {
  db: TestDatabase;
  config: Config;
  temporal: Client;
  app: ReturnType<typeof createApp>;
  /** What the bridge logged, for asserting on its decisions. */
  bridgeLog: Array<Record<string, unknown>>;
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
  { gateway }: { gateway?: PaymentGateway } = {},
): Promise<TestSystem> {
  const db = await createTestDatabase();
  const config = testConfig(shortId(), { DATABASE_URL: db.url, ...overrides });
  const { logger } = captureLogger('warn');
  const bridgeCapture = captureLogger('info');

  const amqp: AmqpConnectionManager = connectAmqp(config, {
    name: `test-system-${config.AMQP_EXCHANGE}`,
    logger,
  });
  const publisher = new OutboxPublisher({ pool: db.pool, amqp, config, logger });
  publisher.start();
  const temporal = await connectTemporal(config);
  const bridge = createBridge({ amqp, temporal, pool: db.pool, config, logger: bridgeCapture.logger });
  await bridge.start();
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const worker: Worker = await createOrderWorker({
    config,
    pool: db.pool,
    logger,
    connection,
    ...(gateway ? { gateway } : {}),
  });
  const workerRun = worker.run();
  const app = createApp({
    pool: db.pool,
    logger,
    workflows: createTemporalOrderWorkflows(temporal, { timeoutMs: 5000 }),
    config,
    checks: {},
  });

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
    bridgeLog: bridgeCapture.lines,
    async placeOrder(body, headers = {}) {
      const res = await app.request('/orders', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
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
      worker.shutdown();
      await workerRun;
      await bridge.stop();
      await publisher.stop();
      await amqp.close();
      await connection.close();
      await temporal.connection.close();
      const admin = await amqplib.connect(config.AMQP_URL);
      await deleteTopology(admin, config.AMQP_EXCHANGE, [config.BRIDGE_QUEUE]);
      await admin.close();
      await db.drop();
    },
  };
}
