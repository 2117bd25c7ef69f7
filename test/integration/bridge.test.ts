/**
 * The bridge against the real RabbitMQ, PostgreSQL and Temporal dev server. No worker polls the
 * test's task queue: a started workflow simply waits there, which is all the bridge is responsible for.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connectAmqp, type AmqpConnectionManager } from '../../lib/amqp/connection.js';
import { DEAD_LETTER_HEADERS, type QueueConsumer } from '../../lib/amqp/consumer.js';
import { dlqName } from '../../lib/amqp/topology.js';
import { eventPublishOptions } from '../../lib/amqp/publisher.js';
import type { Config } from '../../lib/config.js';
import { buildEvent } from '../../lib/events.js';
import { EarlierRunStillOpenError, connectTemporal, startOrderSaga } from '../../lib/temporal.js';
import { orderWorkflowId } from '../../workflows/contract.js';
import { createBridge } from '../../workers/bridge.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrder } from '../workflow/fixtures/orders.js';
import {
  captureLogger,
  closeConnectionsNamed,
  openObserver,
  shortId,
  testConfig,
  waitFor,
  type Observer,
} from '../helpers/amqp.js';

let observer: Observer;
let temporal: Client;
let db: TestDatabase;
let id: string;
let config: Config;
const cleanups: Array<() => Promise<unknown>> = [];
const workflowIds: string[] = [];

beforeAll(async () => {
  observer = await openObserver();
  temporal = await connectTemporal(testConfig('setup'));
  db = await createTestDatabase();
});
afterAll(async () => {
  await observer?.close();
  await temporal?.connection.close();
  await db?.drop();
});
beforeEach(() => {
  id = shortId();
  config = testConfig(id);
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  for (const workflowId of workflowIds.splice(0)) {
    await temporal.workflow
      .getHandle(workflowId)
      .terminate('test cleanup')
      .catch(() => {});
  }
  await observer.cleanup(config.AMQP_EXCHANGE, [config.BRIDGE_QUEUE]);
});

interface Running {
  bridge: QueueConsumer;
  amqp: AmqpConnectionManager;
  lines: Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

async function startBridge(
  opts: {
    client?: Client;
    config?: Config;
    startTimeoutMs?: number;
    retryDelayMs?: number;
    /** false: do not wait for consuming to begin (for a bridge whose setup is refused). */
    waitForStart?: boolean;
  } = {},
): Promise<Running> {
  const cfg = opts.config ?? config;
  const { logger, lines } = captureLogger();
  const amqp = connectAmqp(cfg, { name: `test-bridge-${id}`, logger });
  const bridge = createBridge({
    amqp,
    temporal: opts.client ?? temporal,
    pool: db.pool,
    config: cfg,
    logger,
    retryDelayMs: () => opts.retryDelayMs ?? 300,
    ...(opts.startTimeoutMs ? { startTimeoutMs: opts.startTimeoutMs } : {}),
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await bridge.stop();
    await amqp.close();
  };
  cleanups.push(stop);
  const started = bridge.start();
  if (opts.waitForStart ?? true) await started;
  return { bridge, amqp, lines, stop };
}

/** An order stored as the API stores it, and the `order.placed` event it wrote. */
async function orderPlaced() {
  const order = await createOrder(db.pool, { items: [] });
  workflowIds.push(orderWorkflowId(order.orderId));
  return buildEvent('order.placed', {
    id: randomUUID(),
    orderId: order.orderId,
    correlationId: order.correlationId,
    data: { customerId: order.customerId, email: 'c@example.com', items: [], total: '0.00', currency: 'USD' },
  });
}

function publish(body: Buffer | object, props: { id?: string; type?: string } = {}): void {
  const content = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  const type = props.type ?? 'order.placed';
  const options = eventPublishOptions({ id: props.id ?? randomUUID(), type });
  observer.channel.publish(config.AMQP_EXCHANGE, type, content, options);
}

async function describeWorkflow(workflowId: string) {
  try {
    return await temporal.workflow.getHandle(workflowId).describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
}

describe('bridge', () => {
  it('starts workflow order-<id> on the task queue and acks the message', async () => {
    const running = await startBridge();
    const event = await orderPlaced();
    publish(event, { id: event.id });

    const description = await waitFor(() => describeWorkflow(orderWorkflowId(event.orderId)), {
      what: 'the workflow to exist',
    });
    expect(description.type).toBe('orderSaga');
    expect(description.taskQueue).toBe(config.TEMPORAL_TASK_QUEUE);
    expect(description.status.name).toBe('RUNNING');
    expect(description.memo).toMatchObject({ correlationId: event.correlationId });
    await waitFor(() => running.lines.some((l) => l.msg === 'order saga started'), { what: 'log' });
    const log = running.lines.find((l) => l.msg === 'order saga started')!;
    expect(log).toMatchObject({ orderId: event.orderId, correlationId: event.correlationId });

    // Stopping returns any unacked message to the queue: an empty queue means it was acked.
    await running.stop();
    expect(await observer.messageCount(config.BRIDGE_QUEUE)).toBe(0);
    expect(await observer.messageCount(dlqName(config.BRIDGE_QUEUE))).toBe(0);
  });

  it('starts no more sagas than BRIDGE_MAX_RUNNING_SAGAS while they run (Temporal counts them); the next once one ends', async () => {
    await startBridge({ config: { ...config, BRIDGE_MAX_RUNNING_SAGAS: 2 } });
    const events = [await orderPlaced(), await orderPlaced(), await orderPlaced()];
    for (const event of events) publish(event, { id: event.id });
    const started = async () => {
      const found = await Promise.all(events.map((e) => describeWorkflow(orderWorkflowId(e.orderId))));
      return events.filter((_, i) => found[i] !== undefined);
    };
    const firstTwo = await waitFor(async () => ((await started()).length >= 2 ? started() : undefined), {
      what: 'two sagas started',
    });
    // No worker polls this task queue: both stay running, and the third order waits (its message
    // unacknowledged) well past the window's refresh and grace.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(await started()).toHaveLength(2);
    expect(await observer.messageCount(dlqName(config.BRIDGE_QUEUE))).toBe(0);

    await temporal.workflow.getHandle(orderWorkflowId(firstTwo[0]!.orderId)).terminate('a run ends');
    await waitFor(async () => ((await started()).length === 3 ? true : undefined), {
      what: 'the third saga, once a run ended',
      timeoutMs: 15_000,
    });
  });

  it('stops at once while a message waits for the window: the message goes back to the queue, not to the DLQ', async () => {
    const windowOf1 = { ...config, BRIDGE_MAX_RUNNING_SAGAS: 1 };
    const first = await startBridge({ config: windowOf1 });
    const [running, waiting] = [await orderPlaced(), await orderPlaced()];
    publish(running, { id: running.id });
    await waitFor(() => describeWorkflow(orderWorkflowId(running.orderId)), { what: 'the first saga' });
    publish(waiting, { id: waiting.id });
    await waitFor(() => first.lines.some((l) => l.msg?.toString().startsWith('admission window full')), {
      what: 'the second message waiting for the window',
    });

    const stoppingAt = performance.now();
    await first.stop();
    // Before: the stop waited for the message's admission, up to 5 minutes.
    expect(performance.now() - stoppingAt).toBeLessThan(5_000);
    expect(await observer.messageCount(dlqName(config.BRIDGE_QUEUE))).toBe(0);
    expect(await describeWorkflow(orderWorkflowId(waiting.orderId))).toBeUndefined();

    // The next bridge gets it and starts it once the window has room.
    await temporal.workflow.getHandle(orderWorkflowId(running.orderId)).terminate('a run ends');
    await startBridge({ config: windowOf1 });
    await waitFor(() => describeWorkflow(orderWorkflowId(waiting.orderId)), {
      what: 'the waiting order, started by the next bridge',
      timeoutMs: 15_000,
    });
  });

  it('treats a duplicate delivery as success: one workflow run, both messages acked', async () => {
    const running = await startBridge();
    const event = await orderPlaced();
    publish(event, { id: event.id });
    publish(event, { id: event.id });

    await waitFor(
      () => running.lines.filter((l) => l.msg?.toString().startsWith('order saga')).length === 2,
      {
        what: 'both deliveries handled',
      },
    );
    const outcomes = running.lines
      .filter((l) => l.msg?.toString().startsWith('order saga'))
      .map((l) => l.outcome);
    expect(outcomes.sort()).toEqual(['already-started', 'started']);
    const first = await describeWorkflow(orderWorkflowId(event.orderId));
    publish(event, { id: event.id }); // and once more, after the fact
    await waitFor(() => running.lines.filter((l) => l.outcome === 'already-started').length === 2, {
      what: 'third delivery handled',
    });
    const again = await describeWorkflow(orderWorkflowId(event.orderId));
    expect(again?.runId).toBe(first?.runId);

    await running.stop();
    expect(await observer.messageCount(config.BRIDGE_QUEUE)).toBe(0);
    expect(await observer.messageCount(dlqName(config.BRIDGE_QUEUE))).toBe(0);
  });

  it('dead-letters an order.placed for an order that does not exist, with the reason, and starts nothing', async () => {
    const running = await startBridge();
    const forged = buildEvent('order.placed', {
      id: randomUUID(),
      orderId: randomUUID(),
      correlationId: 'corr-forged',
      data: { customerId: 'C100', email: 'c@example.com', items: [], total: '1.00', currency: 'USD' },
    });
    workflowIds.push(orderWorkflowId(forged.orderId));
    publish(forged, { id: forged.id });

    await waitFor(async () => (await observer.messageCount(dlqName(config.BRIDGE_QUEUE))) === 1, {
      what: 'the message in the DLQ',
    });
    await running.stop();
    const [dead] = await observer.drain(dlqName(config.BRIDGE_QUEUE));
    expect(dead!.properties.messageId).toBe(forged.id);
    expect(dead!.properties.headers).toMatchObject({ [DEAD_LETTER_HEADERS.attempts]: 1 });
    expect(dead!.properties.headers![DEAD_LETTER_HEADERS.reason]).toMatch(
      new RegExp(`order ${forged.orderId} does not exist`),
    );
    expect(await describeWorkflow(orderWorkflowId(forged.orderId))).toBeUndefined();
  });

  it('acks an order.placed whose order already had its run as a duplicate, even once Temporal forgot the run', async () => {
    const running = await startBridge();
    const event = await orderPlaced();
    // The run was started and finished long ago; its history is gone (retention), the order is not.
    await db.pool.query(`update orders set status = 'COMPLETED', started_run = 1 where id = $1::uuid`, [
      event.orderId,
    ]);
    publish(event, { id: event.id });
    await waitFor(() => running.lines.some((l) => String(l.msg).includes('duplicate delivery')), {
      what: 'the duplicate to be acked',
    });
    await running.stop();
    expect(await describeWorkflow(orderWorkflowId(event.orderId))).toBeUndefined();
    expect(await observer.messageCount(config.BRIDGE_QUEUE)).toBe(0);
    expect(await observer.messageCount(dlqName(config.BRIDGE_QUEUE))).toBe(0);
  });

  it('starts a retried order’s new run beside the first, once, and ignores the old run’s messages', async () => {
    const running = await startBridge();
    const placed = await orderPlaced();
    publish(placed, { id: placed.id });
    const first = await waitFor(() => describeWorkflow(orderWorkflowId(placed.orderId)), {
      what: 'run 1',
    });
    await temporal.workflow.getHandle(orderWorkflowId(placed.orderId)).terminate('run 1 failed (test)');
    await db.pool.query(`update orders set run = 2 where id = $1::uuid`, [placed.orderId]);
    const retried = buildEvent('order.retried', {
      id: randomUUID(),
      orderId: placed.orderId,
      correlationId: placed.correlationId,
      data: { run: 2, customerId: 'C-forged', previousStatus: 'PAYMENT_FAILED', reason: 'test' },
    });
    publish(retried, { id: retried.id, type: 'order.retried' });
    publish(retried, { id: retried.id, type: 'order.retried' }); // a duplicate delivery
    publish(placed, { id: placed.id }); // and run 1's message again

    await waitFor(
      () =>
        running.lines.filter(
          (l) => String(l.msg).startsWith('order saga') || String(l.msg).startsWith('run already'),
        ).length === 4,
      {
        what: 'all four deliveries handled',
      },
    );
    const second = await describeWorkflow(orderWorkflowId(placed.orderId));
    expect(second!.runId).not.toBe(first.runId);
    expect(second!.status.name).toBe('RUNNING');
    expect(second!.memo).toMatchObject({ run: 2, correlationId: placed.correlationId });
    const runs = [];
    for await (const w of temporal.workflow.list({
      query: `WorkflowId = '${orderWorkflowId(placed.orderId)}'`,
    })) {
      runs.push(w.runId);
    }
    expect(runs).toHaveLength(2);
    const { rows } = await db.pool.query('select started_run from orders where id = $1::uuid', [
      placed.orderId,
    ]);
    expect(rows[0]).toEqual({ started_run: 2 });
    await running.stop();
  });

  it('does not take an earlier run that is still open for a retry’s run: that start waits, then happens once', async () => {
    const order = await createOrder(db.pool, { items: [] });
    workflowIds.push(orderWorkflowId(order.orderId));
    const input = { ...order, paymentDeadlineMs: 60_000 };
    expect(await startOrderSaga(temporal, { ...input, run: 1 }, config.TEMPORAL_TASK_QUEUE)).toBe('started');
    await expect(
      startOrderSaga(temporal, { ...input, run: 2 }, config.TEMPORAL_TASK_QUEUE),
    ).rejects.toBeInstanceOf(EarlierRunStillOpenError);
    await temporal.workflow.getHandle(orderWorkflowId(order.orderId)).terminate('run 1 ended (test)');
    expect(await startOrderSaga(temporal, { ...input, run: 2 }, config.TEMPORAL_TASK_QUEUE)).toBe('started');
    expect(await startOrderSaga(temporal, { ...input, run: 2 }, config.TEMPORAL_TASK_QUEUE)).toBe(
      'already-started',
    );
  });

  it('moves malformed messages straight to the DLQ with the reason, without retrying', async () => {
    const running = await startBridge();
    const valid = await orderPlaced();
    publish(Buffer.from('{not json'), { id: 'not-json' });
    publish({ ...valid, orderId: 'not-a-uuid', data: {} }, { id: 'bad-fields' });

    await waitFor(async () => (await observer.messageCount(dlqName(config.BRIDGE_QUEUE))) === 2, {
      what: '2 messages in the DLQ',
    });
    await running.stop();
    expect(await observer.messageCount(config.BRIDGE_QUEUE)).toBe(0);
    const dead = await observer.drain(dlqName(config.BRIDGE_QUEUE));
    const byId = Object.fromEntries(dead.map((m) => [m.properties.messageId as string, m]));
    expect(byId['not-json']!.properties.headers![DEAD_LETTER_HEADERS.reason]).toMatch(/body is not JSON/);
    const reason = byId['bad-fields']!.properties.headers![DEAD_LETTER_HEADERS.reason] as string;
    expect(reason).toMatch(/orderId/);
    for (const msg of dead) {
      expect(msg.properties.headers).toMatchObject({
        [DEAD_LETTER_HEADERS.attempts]: 1,
        [DEAD_LETTER_HEADERS.queue]: config.BRIDGE_QUEUE,
        [DEAD_LETTER_HEADERS.routingKey]: 'order.placed',
      });
    }
    // The original body is kept for inspection and replay.
    expect(byId['not-json']!.content.toString()).toBe('{not json');
    expect(
      running.lines.filter((l) => l.msg === 'could not start the order saga (is Temporal reachable?)'),
    ).toEqual([]);
  });

  it('waits out Temporal being unreachable: retries with delays past max deliveries, never dead-letters, starts it once Temporal answers', async () => {
    config = testConfig(id, { BRIDGE_MAX_DELIVERIES: '2' });
    const connection = Connection.lazy({ address: '127.0.0.1:1' });
    const unreachable = new Client({ connection });
    cleanups.push(() => connection.close());
    const outage = await startBridge({ client: unreachable, startTimeoutMs: 500 });
    const event = await orderPlaced();
    const started = Date.now();
    publish(event, { id: event.id });

    const failed = (l: Record<string, unknown>) =>
      l.msg === 'could not start the order saga (is Temporal reachable?)';
    await waitFor(() => outage.lines.filter(failed).length >= 4, {
      timeoutMs: 30_000,
      what: 'four failed attempts',
    });
    const elapsed = Date.now() - started;
    await outage.stop(); // the held message goes back to the queue

    const attempts = outage.lines.filter(failed);
    expect(attempts.slice(0, 4).map((l) => l.attempt)).toEqual([1, 2, 3, 4]);
    expect(attempts[0]).toMatchObject({ orderId: event.orderId, correlationId: event.correlationId });
    // Three retry delays of 300 ms plus four start deadlines of 500 ms: no hot loop.
    expect(elapsed).toBeGreaterThanOrEqual(3 * 300 + 4 * 500);
    expect(await observer.messageCount(dlqName(config.BRIDGE_QUEUE))).toBe(0);
    console.info(`${attempts.length} attempts during the outage in ${elapsed} ms, none dead-lettered`);

    // Temporal is back (a bridge that reaches it): the same message starts the saga.
    await startBridge();
    await waitFor(() => describeWorkflow(orderWorkflowId(event.orderId)), { what: 'the workflow to start' });
    await waitFor(async () => (await observer.messageCount(config.BRIDGE_QUEUE)) === 0, { what: 'the ack' });
    expect(await observer.messageCount(dlqName(config.BRIDGE_QUEUE))).toBe(0);
  });

  it('dead-letters a start Temporal keeps refusing after max deliveries, with the reason', async () => {
    config = testConfig(id, { BRIDGE_MAX_DELIVERIES: '3', TEMPORAL_NAMESPACE: `missing-${id}` });
    const refusing = await connectTemporal(config);
    cleanups.push(() => refusing.connection.close());
    const running = await startBridge({ client: refusing });
    const event = await orderPlaced();
    const started = Date.now();
    publish(event, { id: event.id });

    await waitFor(async () => (await observer.messageCount(dlqName(config.BRIDGE_QUEUE))) === 1, {
      timeoutMs: 30_000,
      what: 'the message in the DLQ',
    });
    const elapsed = Date.now() - started;
    await running.stop();

    const attempts = running.lines.filter(
      (l) => l.msg === 'could not start the order saga (is Temporal reachable?)',
    );
    expect(attempts.map((l) => l.attempt)).toEqual([1, 2, 3]);
    expect(elapsed).toBeGreaterThanOrEqual(2 * 300); // two retry delays: no hot loop
    expect(await observer.messageCount(config.BRIDGE_QUEUE)).toBe(0);
    const [dead] = await observer.drain(dlqName(config.BRIDGE_QUEUE));
    expect(dead!.properties.messageId).toBe(event.id);
    expect(dead!.properties.headers).toMatchObject({ [DEAD_LETTER_HEADERS.attempts]: 3 });
    expect(dead!.properties.headers![DEAD_LETTER_HEADERS.reason]).toMatch(/Namespace not found/);
  });

  it('backs off when its queue exists with other arguments, naming the cause, instead of reopening every second', async () => {
    // A classic queue under the bridge's name: declaring our quorum queue is refused every time.
    await observer.channel.assertQueue(config.BRIDGE_QUEUE, { durable: true });
    const running = await startBridge({ waitForStart: false });
    await new Promise((resolve) => setTimeout(resolve, 6500));
    await running.stop();
    const reopened = running.lines.filter(
      (l) => l.msg === 'AMQP channel closed by the broker; reconnecting to reopen it',
    );
    // 1 s, 2 s, 4 s ...: at most 3 reopenings in 6.5 s, where a fixed 1 s would have made 6.
    expect(reopened.length).toBeGreaterThanOrEqual(2);
    expect(reopened.length).toBeLessThanOrEqual(3);
    expect(running.lines.some((l) => String(l.msg).includes('exists with other arguments'))).toBe(true);
  });

  it('resumes consuming after RabbitMQ drops its connection', async () => {
    const running = await startBridge();
    expect(await closeConnectionsNamed(`test-bridge-${id}`)).toBe(1);
    await waitFor(() => running.lines.filter((l) => l.msg === 'consuming').length === 2, {
      what: 'the consumer to be re-registered',
    });
    const event = await orderPlaced();
    publish(event, { id: event.id });
    await waitFor(() => describeWorkflow(orderWorkflowId(event.orderId)), { what: 'the workflow' });
    await waitFor(() => running.lines.some((l) => l.msg === 'order saga started'), { what: 'log' });
    await running.stop();
    expect(await observer.messageCount(config.BRIDGE_QUEUE)).toBe(0);
  });

  it('settles a message held across a reconnect on its own channel, never on the new one', async () => {
    config = testConfig(id, { BRIDGE_MAX_DELIVERIES: '2', TEMPORAL_NAMESPACE: `missing-${id}` });
    const refusing = await connectTemporal(config);
    cleanups.push(() => refusing.connection.close());
    // Attempt 1 fails and is held 5 s before its requeue; the connection dies meanwhile.
    const running = await startBridge({ client: refusing, retryDelayMs: 5000 });
    const event = await orderPlaced();
    publish(event, { id: event.id });
    await waitFor(() => running.lines.some((l) => l.msg === 'message failed; it will be retried'), {
      what: 'the first failure',
    });
    expect(await closeConnectionsNamed(`test-bridge-${id}`)).toBe(1);

    // The broker redelivers it on the new channel as attempt 2, the last: dead-lettered.
    await waitFor(async () => (await observer.messageCount(dlqName(config.BRIDGE_QUEUE))) === 1, {
      timeoutMs: 20_000,
      what: 'the message in the DLQ',
    });
    // Let the held attempt's timer fire: its requeue must go nowhere (its channel is gone).
    await new Promise((resolve) => setTimeout(resolve, 5500));
    await running.stop();
    expect(
      running.lines.some((l) => l.msg === 'AMQP channel closed by the broker; reconnecting to reopen it'),
    ).toBe(false);
    expect(running.lines.filter((l) => l.msg === 'disconnected from RabbitMQ; reconnecting')).toHaveLength(1);
    expect(await observer.messageCount(config.BRIDGE_QUEUE)).toBe(0);
    const [dead] = await observer.drain(dlqName(config.BRIDGE_QUEUE));
    expect(dead!.properties.headers).toMatchObject({ [DEAD_LETTER_HEADERS.attempts]: 2 });
  });
});
