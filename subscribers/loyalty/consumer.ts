/**
 * Loyalty points: a subscriber outside the order core. It owns its queue (LOYALTY_QUEUE, bound to
 * `payment.completed` and `payment.refunded`, with its own DLQ) and its table (loyalty_points), and
 * uses nothing of the core but the event envelope: adding it changed no core code. A refund takes
 * back the points its capture earned, whichever of the two events arrives first.
 *
 * Delivery is at least once, so the award is idempotent twice over: the event id is recorded in
 * processed_events (consumer 'loyalty') in the statement that awards the points (for a refund, the
 * transaction that takes them back), and an order holds one award at a time: a second capture (a
 * retried order's) waits until the first one's refund frees it (db/loyalty-points.ts). The message is
 * acked only after that commit.
 */
import type { ConsumeMessage } from 'amqplib';
import { z } from 'zod';
import { supportedEventVersion } from '../../lib/events.js';
import {
  assertRoutedAs,
  createConsumer,
  parseMessage,
  PoisonMessageError,
  type QueueConsumer,
} from '../../lib/amqp/consumer.js';
import { amqpUser, type AmqpConnectionManager } from '../../lib/amqp/connection.js';
import { loyaltyQueueSpec } from '../../lib/amqp/topology.js';
import type { Config } from '../../lib/config.js';
import type { Logger } from '../../lib/logger.js';
import type { Registry } from '../../lib/metrics.js';
import { isDataError, isTransientDatabaseError, withTransaction, type Pool } from '../../db/pool.js';
import { awardOrderPoints, revokeOrderPoints } from '../../db/loyalty-points.js';
import { markProcessed } from '../../db/processed-events.js';
import { implausibleAmount } from '../../domain/payment.js';

export const LOYALTY_CONSUMER = 'loyalty';
export const LOYALTY_ROUTING_KEY = 'payment.completed';

const envelope = {
  id: z.uuid(),
  version: supportedEventVersion,
  orderId: z.uuid(),
  correlationId: z.string().min(1),
};
const reference = z.string().min(1).max(200);

export const paymentCompletedEnvelope = z.object({
  ...envelope,
  type: z.literal(LOYALTY_ROUTING_KEY),
  data: z.looseObject({
    amount: z.string().regex(/^\d{1,10}(\.\d+)?$/, 'must be a non-negative decimal string'),
    customerId: z.string().min(1),
    reference,
  }),
});
export type PaymentCompleted = z.infer<typeof paymentCompletedEnvelope>;

export const paymentRefundedEnvelope = z.object({
  ...envelope,
  type: z.literal('payment.refunded'),
  data: z.looseObject({ reference }),
});
export type PaymentRefunded = z.infer<typeof paymentRefundedEnvelope>;

const loyaltyEvent = z.discriminatedUnion('type', [paymentCompletedEnvelope, paymentRefundedEnvelope]);

/** One point per whole currency unit, from the decimal string (never through a float). */
export function pointsFor(amount: string): number {
  return Number.parseInt(amount.split('.')[0]!, 10);
}

export function parsePaymentCompleted(content: Buffer): PaymentCompleted {
  return parseMessage(paymentCompletedEnvelope, content, 'payment.completed envelope');
}

export function parseLoyaltyEvent(content: Buffer): PaymentCompleted | PaymentRefunded {
  return parseMessage(loyaltyEvent, content, 'payment.completed / payment.refunded envelope');
}

/**
 * What a payment.completed did: `waiting` (a retried order's capture, while an earlier capture's
 * award stands: it takes the points when that one is refunded), `capture-refunded` (its refund came
 * first: never awarded), `order-already-awarded` (this capture's award, or its wait, is recorded).
 */
export type AwardOutcome =
  'awarded' | 'duplicate-event' | 'waiting' | 'capture-refunded' | 'order-already-awarded';
export type RevokeOutcome = 'revoked' | 'duplicate-event' | 'nothing-to-revoke';

const AWARD_MESSAGES: Record<AwardOutcome, string> = {
  awarded: 'loyalty points awarded',
  'duplicate-event': 'loyalty points already awarded; ignoring',
  waiting: "loyalty points wait for the earlier capture's refund",
  'capture-refunded': 'loyalty points: the capture was refunded; none awarded',
  'order-already-awarded': 'loyalty points already awarded; ignoring',
};

/** One statement: the event's dedupe record and the award commit together. */
export async function awardPoints(pool: Pool, event: PaymentCompleted): Promise<AwardOutcome> {
  const { fresh, awarded, refunded, waiting } = await awardOrderPoints(pool, LOYALTY_CONSUMER, {
    orderId: event.orderId,
    customerId: event.data.customerId,
    points: pointsFor(event.data.amount),
    eventId: event.id,
    reference: event.data.reference,
  });
  if (!fresh) return 'duplicate-event';
  if (awarded) return 'awarded';
  if (refunded) return 'capture-refunded';
  return waiting ? 'waiting' : 'order-already-awarded';
}

/** Takes back what the refunded capture earned, once; before its award arrives, for good. */
export async function revokePoints(pool: Pool, event: PaymentRefunded): Promise<RevokeOutcome> {
  return withTransaction(pool, async (tx) => {
    if (!(await markProcessed(tx, LOYALTY_CONSUMER, event.id))) return 'duplicate-event';
    const revoked = await revokeOrderPoints(tx, {
      orderId: event.orderId,
      eventId: event.id,
      reference: event.data.reference,
    });
    return revoked ? 'revoked' : 'nothing-to-revoke';
  });
}

export type LoyaltyConfig = Pick<
  Config,
  | 'AMQP_URL'
  | 'AMQP_EXCHANGE'
  | 'LOYALTY_QUEUE'
  | 'LOYALTY_PREFETCH'
  | 'LOYALTY_MAX_DELIVERIES'
  | 'AMQP_TRUSTED_PUBLISHERS'
  | 'AMQP_MAX_MESSAGE_BYTES'
  | 'EVENT_MAX_AMOUNT'
>;

export interface LoyaltySubscriberOptions {
  amqp: AmqpConnectionManager;
  pool: Pool;
  config: LoyaltyConfig;
  logger: Logger;
  retryDelayMs?: (attempt: number) => number;
  /** The process's metrics registry (redeliveries, DLQ depth); default: one nobody scrapes. */
  registry?: Registry;
}

export function createLoyaltySubscriber({
  amqp,
  pool,
  config,
  logger,
  retryDelayMs,
  registry,
}: LoyaltySubscriberOptions): QueueConsumer {
  const handle = async (msg: ConsumeMessage) => {
    const event = parseLoyaltyEvent(msg.content);
    assertRoutedAs(msg, event.type);
    const implausible =
      'amount' in event.data
        ? implausibleAmount(String(event.data.amount), config.EVENT_MAX_AMOUNT)
        : undefined;
    if (implausible) throw new PoisonMessageError(`${event.type} ${event.id}: ${implausible}`);
    if (event.type === 'payment.refunded') {
      const outcome = await revokePoints(pool, event);
      logger.info(
        { orderId: event.orderId, correlationId: event.correlationId, eventId: event.id, outcome },
        outcome === 'revoked'
          ? 'loyalty points taken back (payment refunded)'
          : 'refund: no points to take back',
      );
      return;
    }
    const outcome = await awardPoints(pool, event);
    logger.info(
      {
        orderId: event.orderId,
        correlationId: event.correlationId,
        eventId: event.id,
        customerId: event.data.customerId,
        outcome,
        ...(outcome === 'awarded' ? { points: pointsFor(event.data.amount) } : {}),
      },
      AWARD_MESSAGES[outcome],
    );
  };

  return createConsumer({
    manager: amqp,
    user: amqpUser(config.AMQP_URL),
    ...loyaltyQueueSpec(config),
    prefetch: config.LOYALTY_PREFETCH,
    maxDeliveries: config.LOYALTY_MAX_DELIVERIES,
    logger,
    handle,
    isTransient: isTransientDatabaseError, // the database down is an outage to wait out
    isPoison: isDataError, // a value the database refuses is refused on every retry
    // Points are money's worth: only what the outbox (or an operator's re-drive) sent counts.
    trustedPublishers: config.AMQP_TRUSTED_PUBLISHERS,
    maxMessageBytes: config.AMQP_MAX_MESSAGE_BYTES,
    ...(retryDelayMs ? { retryDelayMs } : {}),
    ...(registry ? { registry } : {}),
  });
}
