/**
 * The bridge: turns each `order.placed` event into a started order saga.
 *
 * The workflow id is the business key (`order-<orderId>`, reject-duplicate), so a redelivered or
 * duplicated message finds the saga already started and is acked as a success: never a second run.
 * A message is acked only after Temporal accepted the start; a malformed one goes straight to
 * `<queue>.dlq` (it would fail the same way forever); any other failure (Temporal down, a deadline)
 * is retried with a growing delay and dead-lettered with its reason after BRIDGE_MAX_DELIVERIES.
 */
import type { Client } from '@temporalio/client';
import type { ConsumeMessage } from 'amqplib';
import { z } from 'zod';
import {
  createConsumer,
  describeError,
  parseMessage,
  type AmqpConnectionManager,
  type ConsumerQueueSpec,
  type QueueConsumer,
} from '../lib/amqp.js';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import { isTemporalUnavailable, startOrderSaga } from '../lib/temporal.js';
import { orderWorkflowId } from '../workflows/contract.js';

export const BRIDGE_ROUTING_KEY = 'order.placed';

/** The bridge's queue: declared by the bridge, and by the outbox publisher before it publishes. */
export function bridgeQueueSpec(config: Pick<Config, 'AMQP_EXCHANGE' | 'BRIDGE_QUEUE'>): ConsumerQueueSpec {
  return { exchange: config.AMQP_EXCHANGE, queue: config.BRIDGE_QUEUE, routingKeys: [BRIDGE_ROUTING_KEY] };
}

/** What the bridge needs from an `order.placed` envelope; anything else in it is left alone. */
export const orderPlacedEnvelope = z.object({
  id: z.uuid(),
  type: z.literal(BRIDGE_ROUTING_KEY),
  version: z.number().int().positive(),
  occurredAt: z.iso.datetime({ offset: true }),
  orderId: z.uuid(),
  correlationId: z.string().min(1),
  data: z.looseObject({ customerId: z.string().min(1) }),
});
export type OrderPlacedEnvelope = z.infer<typeof orderPlacedEnvelope>;

/** Parses and validates a message body; throws `PoisonMessageError` naming what is wrong. */
export function parseOrderPlaced(content: Buffer): OrderPlacedEnvelope {
  return parseMessage(orderPlacedEnvelope, content, 'order.placed envelope');
}

export type BridgeConfig = Pick<
  Config,
  | 'AMQP_EXCHANGE'
  | 'BRIDGE_QUEUE'
  | 'BRIDGE_PREFETCH'
  | 'BRIDGE_MAX_DELIVERIES'
  | 'PAYMENT_DEADLINE_MS'
  | 'TEMPORAL_TASK_QUEUE'
>;

export interface BridgeOptions {
  amqp: AmqpConnectionManager;
  temporal: Client;
  config: BridgeConfig;
  logger: Logger;
  /** Bound on one start call, including the client's own gRPC retries (default 10 s). */
  startTimeoutMs?: number;
  /** Delay before a failed message is retried (default: 1 s doubling, at most 30 s). */
  retryDelayMs?: (attempt: number) => number;
}

export function createBridge({
  amqp,
  temporal,
  config,
  logger,
  startTimeoutMs = 10_000,
  retryDelayMs,
}: BridgeOptions): QueueConsumer {
  const handle = async (msg: ConsumeMessage, { attempt }: { attempt: number }) => {
    const event = parseOrderPlaced(msg.content);
    const log = logger.child({
      orderId: event.orderId,
      correlationId: event.correlationId,
      eventId: event.id,
      attempt,
    });
    try {
      const outcome = await temporal.withDeadline(Date.now() + startTimeoutMs, () =>
        startOrderSaga(
          temporal,
          {
            orderId: event.orderId,
            customerId: event.data.customerId,
            correlationId: event.correlationId,
            paymentDeadlineMs: config.PAYMENT_DEADLINE_MS,
          },
          config.TEMPORAL_TASK_QUEUE,
        ),
      );
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
    ...bridgeQueueSpec(config),
    prefetch: config.BRIDGE_PREFETCH,
    maxDeliveries: config.BRIDGE_MAX_DELIVERIES,
    logger,
    handle,
    // Temporal down is an outage to wait out, not a reason to give up on the order.
    isTransient: isTemporalUnavailable,
    ...(retryDelayMs ? { retryDelayMs } : {}),
  });
}
