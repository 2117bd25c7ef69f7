/**
 * Order analytics: a subscriber outside the order core, like loyalty. It owns its queue
 * (ANALYTICS_QUEUE, bound to every order event, with its own DLQ) and its tables (analytics_orders,
 * analytics_payments; db/analytics.ts), from which `GET /analytics/summary` is computed, and uses
 * nothing of the core but the event envelope.
 *
 * Delivery is at least once and in no particular order (redeliveries, several consumers, prefetch):
 * the event id is recorded in processed_events (consumer 'analytics') in the statement, or the
 * transaction, that applies its effect, and every effect is a fold that does not depend on the order of arrival (db/analytics.ts).
 * A malformed message goes to the DLQ at once; the message is acked only after the commit.
 */
import type { ConsumeMessage } from 'amqplib';
import { z } from 'zod';
import {
  assertRoutedAs,
  createConsumer,
  parseMessage,
  PoisonMessageError,
  type QueueConsumer,
} from '../../lib/amqp/consumer.js';
import { amqpUser, type AmqpConnectionManager } from '../../lib/amqp/connection.js';
import { analyticsQueueSpec } from '../../lib/amqp/topology.js';
import type { Config } from '../../lib/config.js';
import { supportedEventVersion, type EventType } from '../../lib/events.js';
import type { Logger } from '../../lib/logger.js';
import { analyticsMetrics, type Registry } from '../../lib/metrics.js';
import {
  analyticsTotals,
  recordEvent,
  recordFinalStatus,
  recordRunStarted,
  type EventFact,
} from '../../db/analytics.js';
import {
  isDataError,
  isTransientDatabaseError,
  withTransaction,
  type Pool,
  type Queryable,
} from '../../db/pool.js';
import { implausibleAmount } from '../../domain/payment.js';

export const ANALYTICS_CONSUMER = 'analytics';

const money = z.string().regex(/^\d{1,10}(\.\d{1,2})?$/, 'must be a non-negative decimal string');
const currency = z.string().regex(/^[A-Z]{3}$/, 'must be a 3-letter currency code');

/** The envelope, with the `data` fields this subscriber reads (others are let through). */
const envelope = <T extends EventType, D extends z.ZodRawShape>(type: T, data: D) =>
  z.object({
    id: z.uuid(),
    type: z.literal(type),
    version: supportedEventVersion,
    occurredAt: z.iso.datetime({ offset: true }),
    orderId: z.uuid(),
    correlationId: z.string().min(1),
    data: z.looseObject(data),
  });

export const orderEventEnvelope = z.discriminatedUnion('type', [
  envelope('order.placed', { total: money, currency }),
  envelope('order.retried', { run: z.int().min(2) }),
  envelope('inventory.reserved', {}),
  envelope('order.out_of_stock', {}),
  envelope('payment.completed', { amount: money, currency, reference: z.string().min(1) }),
  envelope('payment.failed', { amount: money, currency, code: z.string().min(1), reason: z.string() }),
  envelope('payment.refunded', { amount: money, currency, reference: z.string().min(1) }),
  envelope('inventory.released', {}),
  envelope('order.completed', { total: money, currency }),
  envelope('order.cancelled', { reason: z.string() }),
]);
export type OrderEvent = z.infer<typeof orderEventEnvelope>;

export function parseOrderEvent(content: Buffer): OrderEvent {
  return parseMessage(orderEventEnvelope, content, 'order event envelope');
}

/**
 * A payment failure's label for counting: its code and the reason's leading plain words, which stop
 * before the first one carrying a number, an id or punctuation, so that "card declined for customer
 * C-17 (…)" and "… C-18 (…)" count together: `DECLINED: card declined for customer`.
 */
export function paymentFailureLabel(code: string, reason: string): string {
  const words: string[] = [];
  for (const word of reason.trim().split(/\s+/)) {
    if (!/^[a-z]+$/.test(word) || words.length === 6) break;
    words.push(word);
  }
  return words.length > 0 ? `${code}: ${words.join(' ')}` : code;
}

/** What applying an event did: changed the order's record, or came too late to change its status. */
export type ApplyOutcome = 'applied' | 'duplicate-event' | 'superseded';

export async function applyOrderEvent(pool: Pool, event: OrderEvent): Promise<ApplyOutcome> {
  const fact = factOf(event);
  // Most events (three of a completed order's four) are that first write alone: one statement.
  if (!folds(event)) return (await recordEvent(pool, fact)) ? 'applied' : 'duplicate-event';
  return withTransaction(pool, async (tx) => {
    if (!(await recordEvent(tx, fact))) return 'duplicate-event';
    return (await fold(tx, event)) ? 'applied' : 'superseded';
  });
}

/** The dedupe record, the order's span and total, and a payment event's money movement. */
function factOf(event: OrderEvent): EventFact {
  const fact: EventFact = {
    consumer: ANALYTICS_CONSUMER,
    eventId: event.id,
    orderId: event.orderId,
    at: new Date(event.occurredAt),
    ...orderTotalIn(event),
  };
  if (event.type === 'order.placed') fact.placedAt = fact.at;
  if (event.type === 'payment.completed' || event.type === 'payment.refunded') {
    const { amount, currency, reference } = event.data;
    fact.payment = {
      kind: event.type === 'payment.completed' ? 'captured' : 'refunded',
      amount,
      currency,
      reference,
    };
  }
  return fact;
}

type FoldedEvent = Exclude<
  OrderEvent,
  {
    type:
      'order.placed' | 'inventory.reserved' | 'inventory.released' | 'payment.completed' | 'payment.refunded';
  }
>;

/** Events that change the order's record beyond `recordEvent`: a new run, or a final status. */
function folds(event: OrderEvent): event is FoldedEvent {
  switch (event.type) {
    case 'order.placed':
    case 'inventory.reserved':
    case 'inventory.released':
    case 'payment.completed':
    case 'payment.refunded':
      return false;
    default:
      return true;
  }
}

/** False when the event was older than what the order's record already says (its money still counts). */
async function fold(tx: Queryable, event: FoldedEvent): Promise<boolean> {
  const orderId = event.orderId;
  const at = new Date(event.occurredAt);
  switch (event.type) {
    case 'order.retried':
      return recordRunStarted(tx, { orderId, run: event.data.run, at });
    case 'order.completed':
      return recordFinalStatus(tx, { orderId, status: 'COMPLETED', at });
    case 'order.out_of_stock':
      return recordFinalStatus(tx, { orderId, status: 'OUT_OF_STOCK', at, reason: 'out of stock' });
    case 'payment.failed':
      return recordFinalStatus(tx, {
        orderId,
        status: 'PAYMENT_FAILED',
        at,
        reason: paymentFailureLabel(event.data.code, event.data.reason),
        detail: event.data.reason,
      });
    case 'order.cancelled':
      // A cancel reason is the customer's free text: counted as one label, kept as the detail.
      return recordFinalStatus(tx, {
        orderId,
        status: 'CANCELLED',
        at,
        reason: 'cancelled',
        detail: event.data.reason,
      });
  }
}

/** The order's total, from the events that carry it (a payment is for the whole order). */
function orderTotalIn(event: OrderEvent): { amount?: string; currency?: string } {
  switch (event.type) {
    case 'order.placed':
    case 'order.completed':
      return { amount: event.data.total, currency: event.data.currency };
    case 'payment.completed':
    case 'payment.failed':
    case 'payment.refunded':
      return { amount: event.data.amount, currency: event.data.currency };
    default:
      return {};
  }
}

export type AnalyticsConfig = Pick<
  Config,
  | 'AMQP_URL'
  | 'AMQP_EXCHANGE'
  | 'ANALYTICS_QUEUE'
  | 'ANALYTICS_PREFETCH'
  | 'ANALYTICS_MAX_DELIVERIES'
  | 'AMQP_TRUSTED_PUBLISHERS'
  | 'AMQP_MAX_MESSAGE_BYTES'
  | 'EVENT_MAX_AMOUNT'
>;

export interface AnalyticsSubscriberOptions {
  amqp: AmqpConnectionManager;
  pool: Pool;
  config: AnalyticsConfig;
  logger: Logger;
  retryDelayMs?: (attempt: number) => number;
  /**
   * The process's metrics registry: redeliveries and DLQ depth, and what the subscriber has learnt
   * (`acme_analytics_*`, read from its tables when scraped). Default: one nobody scrapes.
   */
  registry?: Registry;
}

export function createAnalyticsSubscriber({
  amqp,
  pool,
  config,
  logger,
  retryDelayMs,
  registry,
}: AnalyticsSubscriberOptions): QueueConsumer {
  if (registry) analyticsMetrics(registry, { totals: () => analyticsTotals(pool), logger });
  const handle = async (msg: ConsumeMessage) => {
    const event = parseOrderEvent(msg.content);
    assertRoutedAs(msg, event.type);
    const { amount } = orderTotalIn(event);
    const implausible = amount === undefined ? undefined : implausibleAmount(amount, config.EVENT_MAX_AMOUNT);
    if (implausible) throw new PoisonMessageError(`${event.type} ${event.id}: ${implausible}`);
    const outcome = await applyOrderEvent(pool, event);
    const fields = {
      orderId: event.orderId,
      correlationId: event.correlationId,
      eventId: event.id,
      type: event.type,
      outcome,
    };
    // Five or more events per order: the ordinary case is debug, the unusual ones are worth a line.
    if (outcome === 'applied') logger.debug(fields, 'analytics: event applied');
    else if (outcome === 'duplicate-event') logger.info(fields, 'analytics: event already applied; ignoring');
    else logger.info(fields, "analytics: event older than the order's latest run; its status ignored");
  };

  return createConsumer({
    manager: amqp,
    user: amqpUser(config.AMQP_URL),
    ...analyticsQueueSpec(config),
    prefetch: config.ANALYTICS_PREFETCH,
    maxDeliveries: config.ANALYTICS_MAX_DELIVERIES,
    logger,
    handle,
    isTransient: isTransientDatabaseError, // the database down is an outage to wait out
    isPoison: isDataError, // a value the database refuses is refused on every retry
    // Revenue figures count only what the outbox (or an operator's re-drive) sent.
    trustedPublishers: config.AMQP_TRUSTED_PUBLISHERS,
    maxMessageBytes: config.AMQP_MAX_MESSAGE_BYTES,
    ...(retryDelayMs ? { retryDelayMs } : {}),
    ...(registry ? { registry } : {}),
  });
}
