/**
 * The bridge: turns each `order.placed` (a new order) and `order.retried` (an operator's retry) into
 * a started run of the order saga.
 *
 * The message only says which order and which run; everything else (customer, correlation id) is
 * read from the order itself, so a forged or stale message cannot choose what a run is started with.
 * - no such order: dead-lettered at once with the reason (no run is ever started for it);
 * - a run the order has moved past, or one already started (`orders.started_run`, kept after
 *   Temporal has forgotten the run): acked as a duplicate;
 * - otherwise the run is started as workflow `order-<orderId>` and the start recorded; Temporal
 *   refusing a second start of the same run (reject-duplicate, or the run found in the latest
 *   execution's memo) is a duplicate too. Never a second run from a duplicate.
 * At most BRIDGE_MAX_RUNNING_SAGAS sagas run at once (workers/bridge-admission.ts): a message past
 * that window waits here, unacked, until runs end (or the bridge stops: it then goes back to the queue).
 * A message is acked only after Temporal accepted the start; a malformed one goes straight to
 * `<queue>.dlq`; Temporal or PostgreSQL unreachable is waited out; any other failure is retried with
 * a growing delay and dead-lettered with its reason after BRIDGE_MAX_DELIVERIES.
 */
import type { Client } from '@temporalio/client';
import type { ConsumeMessage } from 'amqplib';
import { z } from 'zod';
import { supportedEventVersion } from '../lib/events.js';
import {
  PoisonMessageError,
  createConsumer,
  describeError,
  type DeliveryContext,
  parseMessage,
  type QueueConsumer,
} from '../lib/amqp/consumer.js';
import { amqpUser, type AmqpConnectionManager } from '../lib/amqp/connection.js';
import { bridgeQueueSpec } from '../lib/amqp/topology.js';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import { bridgeMetrics, Registry } from '../lib/metrics.js';
import { countRunningSagas, isTemporalUnavailable, startOrderSaga } from '../lib/temporal.js';
import {
  findOrder,
  markRunStarted,
  heldStockStats,
  notStartedStats,
  orderItems,
  type ItemRow,
  type OrderRow,
} from '../db/orders.js';
import { isTransientDatabaseError, type Pool } from '../db/pool.js';
import { orderWorkflowId } from '../workflows/contract.js';
import { createAdmissionGate } from './bridge-admission.js';

const envelope = {
  id: z.uuid(),
  version: supportedEventVersion,
  occurredAt: z.iso.datetime({ offset: true }),
  orderId: z.uuid(),
  correlationId: z.string().min(1),
};

/** What the bridge needs from a message; anything else in it is left alone. */
export const runRequestEnvelope = z.discriminatedUnion('type', [
  z.object({ ...envelope, type: z.literal('order.placed'), data: z.looseObject({}) }),
  z.object({
    ...envelope,
    type: z.literal('order.retried'),
    data: z.looseObject({ run: z.number().int().min(2) }),
  }),
]);
export type RunRequestEnvelope = z.infer<typeof runRequestEnvelope>;

/** Parses and validates a message body; throws `PoisonMessageError` naming what is wrong. */
export function parseRunRequest(content: Buffer): RunRequestEnvelope {
  return parseMessage(runRequestEnvelope, content, 'order.placed / order.retried envelope');
}

/** The run a message asks for: run 1 for a new order, the retry's own number for a retry. */
const requestedRun = (event: RunRequestEnvelope): number =>
  event.type === 'order.retried' ? event.data.run : 1;

export type BridgeConfig = Pick<
  Config,
  | 'AMQP_URL'
  | 'AMQP_EXCHANGE'
  | 'AMQP_MAX_MESSAGE_BYTES'
  | 'BRIDGE_QUEUE'
  | 'BRIDGE_PREFETCH'
  | 'BRIDGE_MAX_DELIVERIES'
  | 'BRIDGE_MAX_RUNNING_SAGAS'
  | 'PAYMENT_DEADLINE_MS'
  | 'TEMPORAL_TASK_QUEUE'
>;

export interface BridgeOptions {
  amqp: AmqpConnectionManager;
  temporal: Client;
  pool: Pool;
  config: BridgeConfig;
  logger: Logger;
  /** Bound on one start call, including the client's own gRPC retries (default 10 s). */
  startTimeoutMs?: number;
  /** Delay before a failed message is retried (default: 1 s doubling, at most 30 s). */
  retryDelayMs?: (attempt: number) => number;
  /**
   * The process's metrics registry: start lag, redeliveries and the DLQ's depth. Default: one
   * nobody scrapes.
   */
  registry?: Registry;
}

export function createBridge({
  amqp,
  temporal,
  pool,
  config,
  logger,
  startTimeoutMs = 10_000,
  retryDelayMs,
  registry = new Registry(),
}: BridgeOptions): QueueConsumer {
  const metrics = bridgeMetrics(registry, {
    notStarted: () => notStartedStats(pool),
    heldStock: () => heldStockStats(pool),
    logger,
  });
  const admission = createAdmissionGate({
    maxRunning: config.BRIDGE_MAX_RUNNING_SAGAS,
    // Bounded like a start: Temporal unreachable fails the count, and the gate then admits.
    countRunning: () =>
      temporal.withDeadline(Date.now() + startTimeoutMs, () =>
        countRunningSagas(temporal, config.TEMPORAL_TASK_QUEUE),
      ),
    logger,
  });
  const handle = async (msg: ConsumeMessage, { attempt, stopping }: DeliveryContext) => {
    const event = parseRunRequest(msg.content);
    const run = requestedRun(event);
    const log = logger.child({
      orderId: event.orderId,
      correlationId: event.correlationId,
      eventId: event.id,
      type: event.type,
      run,
      attempt,
    });
    const order = await findOrder(pool, event.orderId);
    if (!order) {
      throw new PoisonMessageError(`${event.type}: order ${event.orderId} does not exist; no run started`);
    }
    if (order.run !== run || (order.started_run ?? 0) >= run) {
      log.info(
        { outcome: 'already-started', currentRun: order.run, startedRun: order.started_run },
        order.run > run
          ? 'run already superseded by a later one: nothing to start (duplicate delivery)'
          : 'order saga already started (duplicate delivery)',
      );
      return;
    }
    const summary = runSummary(order, await orderItems(pool, order.id), run);
    await admission.admit(stopping);
    try {
      const outcome = await temporal.withDeadline(Date.now() + startTimeoutMs, () =>
        startOrderSaga(
          temporal,
          {
            orderId: order.id,
            customerId: order.customer_id,
            correlationId: order.correlation_id,
            run,
            paymentDeadlineMs: config.PAYMENT_DEADLINE_MS,
          },
          config.TEMPORAL_TASK_QUEUE,
          summary,
        ),
      );
      await markRunStarted(pool, order.id, run);
      if (outcome === 'started') metrics.runStarted(new Date(event.occurredAt));
      log.info(
        { outcome, workflowId: orderWorkflowId(event.orderId), taskQueue: config.TEMPORAL_TASK_QUEUE },
        outcome === 'started' ? 'order saga started' : 'order saga already started (duplicate delivery)',
      );
    } catch (err) {
      log.warn({ err: describeError(err) }, 'could not start the order saga (is Temporal reachable?)');
      throw err;
    }
  };

  return createConsumer({
    manager: amqp,
    user: amqpUser(config.AMQP_URL),
    ...bridgeQueueSpec(config),
    prefetch: config.BRIDGE_PREFETCH,
    maxDeliveries: config.BRIDGE_MAX_DELIVERIES,
    logger,
    handle,
    // Temporal or PostgreSQL down is an outage to wait out, not a reason to give up on the order.
    isTransient: (err) => isTemporalUnavailable(err) || isTransientDatabaseError(err),
    maxMessageBytes: config.AMQP_MAX_MESSAGE_BYTES,
    ...(retryDelayMs ? { retryDelayMs } : {}),
    registry,
  });
}

/**
 * The run's one-line summary in the Web UI: who, what, how much, which run. Ids and amounts only:
 * the history is kept and shown, so no e-mail address.
 */
export function runSummary(
  order: Pick<OrderRow, 'customer_id' | 'total' | 'currency'>,
  items: ItemRow[],
  run: number,
): string {
  const units = items.reduce((sum, i) => sum + i.qty, 0);
  const what = items.length === 1 ? `${units} × ${items[0]!.sku}` : `${units} items (${items.length} SKUs)`;
  return `customer ${order.customer_id} · ${what} · ${order.total} ${order.currency}${run > 1 ? ` · run ${run} (retry)` : ''}`;
}
