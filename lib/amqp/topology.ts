/**
 * The topology of `acme.events`, in one place: what every process declares, and which queue each
 * consumer group reads. Declared idempotently by whoever needs it, so any process may start first:
 *
 *   <exchange>             topic, durable; routing key = event type
 *   <exchange>.dlx         direct, durable; one binding per consumer queue (routing key = queue name)
 *   <queue>                quorum, durable, bound to its routing keys, dead-letters to <exchange>.dlx
 *   <queue>.dlq            quorum, durable, bound to <exchange>.dlx with key <queue>
 *
 * The consumer queues' specs live here rather than beside their consumers, so a process that only
 * declares queues (the outbox publisher declares every consumer group's before it publishes:
 * `consumerQueueSpecs`) imports this module and not the consumers with their dependencies (the
 * bridge pulls in the Temporal client).
 */
import type { ConfirmChannel } from 'amqplib';
import type { Config } from '../config.js';
import type { EventType } from '../events.js';

/** The DLQ of a consumer queue. */
export const dlqName = (queue: string): string => `${queue}.dlq`;
/** The dead-letter exchange shared by every consumer queue of an events exchange. */
export const dlxName = (exchange: string): string => `${exchange}.dlx`;

/**
 * Broker-side backstop for a message that never gets settled by our code (e.g. it crashes the
 * consumer each time): the quorum queue dead-letters it after this many returns. Our own limit
 * (`maxDeliveries`, at most 100 by config) always applies first and records the reason. A constant,
 * because queue arguments cannot change once declared: a config change must not break re-declaring.
 */
export const DELIVERY_LIMIT_BACKSTOP = 100;

export interface ConsumerQueueSpec {
  exchange: string;
  queue: string;
  routingKeys: readonly string[];
}

export async function assertEventExchange(channel: ConfirmChannel, exchange: string): Promise<void> {
  await channel.assertExchange(exchange, 'topic', { durable: true });
}

/** Declares the exchange, the queue with its dead-letter path, and the bindings. Idempotent. */
export async function assertConsumerQueue(
  channel: ConfirmChannel,
  { exchange, queue, routingKeys }: ConsumerQueueSpec,
): Promise<void> {
  const dlx = dlxName(exchange);
  await assertEventExchange(channel, exchange);
  await channel.assertExchange(dlx, 'direct', { durable: true });
  await channel.assertQueue(dlqName(queue), { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await channel.bindQueue(dlqName(queue), dlx, queue);
  await channel.assertQueue(queue, {
    durable: true,
    arguments: {
      'x-queue-type': 'quorum',
      'x-dead-letter-exchange': dlx,
      'x-dead-letter-routing-key': queue,
      'x-delivery-limit': DELIVERY_LIMIT_BACKSTOP,
    },
  });
  for (const key of routingKeys) await channel.bindQueue(queue, exchange, key);
}

// ---------------------------------------------------------------------------------------------------
// The consumer groups

/** The bridge starts a run for a new order and for an operator's retry. */
export const BRIDGE_ROUTING_KEYS = ['order.placed', 'order.retried'] as const satisfies readonly EventType[];

/** The bridge's queue: declared by the bridge, and by the outbox publisher before it publishes. */
export function bridgeQueueSpec(config: Pick<Config, 'AMQP_EXCHANGE' | 'BRIDGE_QUEUE'>): ConsumerQueueSpec {
  return { exchange: config.AMQP_EXCHANGE, queue: config.BRIDGE_QUEUE, routingKeys: BRIDGE_ROUTING_KEYS };
}

/** Points are earned by a capture and taken back by its refund. */
export const LOYALTY_ROUTING_KEYS = [
  'payment.completed',
  'payment.refunded',
] as const satisfies readonly EventType[];

export function loyaltyQueueSpec(config: Pick<Config, 'AMQP_EXCHANGE' | 'LOYALTY_QUEUE'>): ConsumerQueueSpec {
  return { exchange: config.AMQP_EXCHANGE, queue: config.LOYALTY_QUEUE, routingKeys: LOYALTY_ROUTING_KEYS };
}

/** Every event of an order's life (the whole catalogue today; a new type is added here on purpose). */
export const ANALYTICS_ROUTING_KEYS = [
  'order.placed',
  'order.retried',
  'inventory.reserved',
  'order.out_of_stock',
  'payment.completed',
  'payment.failed',
  'payment.refunded',
  'inventory.released',
  'order.completed',
  'order.cancelled',
] as const satisfies readonly EventType[];

export function analyticsQueueSpec(
  config: Pick<Config, 'AMQP_EXCHANGE' | 'ANALYTICS_QUEUE'>,
): ConsumerQueueSpec {
  return {
    exchange: config.AMQP_EXCHANGE,
    queue: config.ANALYTICS_QUEUE,
    routingKeys: ANALYTICS_ROUTING_KEYS,
  };
}

// ---------------------------------------------------------------------------------------------------
// All of them

export type ConsumerQueuesConfig = Pick<
  Config,
  'AMQP_EXCHANGE' | 'BRIDGE_QUEUE' | 'LOYALTY_QUEUE' | 'ANALYTICS_QUEUE'
>;

/**
 * Every consumer group's queue, under its configured name. The outbox publisher declares all of them
 * before it publishes (and again on every reconnect): a topic exchange confirms a message no queue is
 * bound to and drops it, so an event published before its subscriber first started (a fresh install),
 * or while its queue was gone, would be lost without anyone noticing. A new consumer group is added
 * here (and to the outbox's broker permissions, scripts/provision-access.sh).
 */
export function consumerQueueSpecs(config: ConsumerQueuesConfig): ConsumerQueueSpec[] {
  return [bridgeQueueSpec(config), loyaltyQueueSpec(config), analyticsQueueSpec(config)];
}
