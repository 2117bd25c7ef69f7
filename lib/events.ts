/**
 * The event catalogue: every event the system publishes to the `acme.events` topic exchange.
 *
 * Routing key = event type. The AMQP message carries `messageId` = envelope id, `type` = event type,
 * `correlationId`, `contentType: application/json` and is persistent. Consumers dedupe by `id`:
 * delivery is at least once.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

export const EVENT_VERSION = 1;

/**
 * What every consumer requires of an envelope's `version`: the one this code writes and reads. An
 * event of another version (a newer producer during a rolling deploy, an old one re-driven) is
 * refused, dead-lettered with the reason, never read as if its fields meant what version 1's mean.
 */
export const supportedEventVersion = z.literal(EVENT_VERSION, {
  error: (issue) =>
    `version ${JSON.stringify(issue.input)} is not supported: this consumer reads version ${EVENT_VERSION}`,
});

/** What each event means and who emits it; the README's event table is checked against this. */
export const EVENT_CATALOGUE = {
  'order.placed': { producer: 'api', description: 'An order was accepted and stored (status PENDING).' },
  'inventory.reserved': {
    producer: 'saga: reserveInventory',
    description:
      'Stock for every item was reserved (status RESERVED). `takenOver: true`: a retried run took over the stock its failed run still held; nothing was taken again.',
  },
  'order.out_of_stock': {
    producer: 'saga: reserveInventory',
    description: 'At least one item lacked stock; nothing was reserved (status OUT_OF_STOCK).',
  },
  'payment.completed': {
    producer: 'saga: chargePayment',
    description: 'The payment was captured (status PAID).',
  },
  'payment.failed': {
    producer: 'saga: failPayment',
    description: 'The payment was declined or its deadline passed (status PAYMENT_FAILED).',
  },
  'payment.refunded': {
    producer: 'saga: refundPayment (compensation), chargePayment (late capture)',
    description:
      'A captured payment was given back: the order was cancelled, or its run failed or was undone, or the capture landed after the payment was settled.',
  },
  'inventory.released': {
    producer: 'saga: releaseInventory (compensation); API: cancel with no saga running',
    description: 'Reserved stock was returned after a failed payment or run, or a cancellation.',
  },
  'order.completed': {
    producer: 'saga: completeOrder',
    description: 'The customer was notified of the paid order (status COMPLETED).',
  },
  'order.cancelled': {
    producer: 'saga: cancelOrder / api',
    description: 'The order was cancelled, its stock and any capture already given back (status CANCELLED).',
  },
  'order.retried': {
    producer: 'operator: retry (CLI or API)',
    description: 'A failed order was set to run again as a new run (status PENDING); the bridge starts it.',
  },
} as const;

export type EventType = keyof typeof EVENT_CATALOGUE;
export const EVENT_TYPES = Object.keys(EVENT_CATALOGUE) as EventType[];

export interface OrderLine {
  sku: string;
  qty: number;
  unitPrice: string;
}

/** The `data` of each event type. Money is a decimal string, never a float. */
export interface EventData {
  'order.placed': {
    customerId: string;
    email: string;
    items: OrderLine[];
    total: string;
    currency: string;
  };
  /** `takenOver`: the stock the order's failed run still held passed to this run (not a new share). */
  'inventory.reserved': { items: Array<{ sku: string; qty: number }>; takenOver?: true };
  'order.out_of_stock': { unavailable: Array<{ sku: string; requested: number; available: number }> };
  'payment.completed': { amount: string; currency: string; reference: string; customerId: string };
  'payment.failed': { amount: string; currency: string; reason: string; code: PaymentFailureCode };
  'payment.refunded': { amount: string; currency: string; reference: string; reason: string };
  'inventory.released': { items: Array<{ sku: string; qty: number }>; reason: string };
  'order.completed': { customerId: string; total: string; currency: string };
  'order.cancelled': { reason: string };
  /** `run` is the new run's number; `previousStatus` where the failed run left the order. */
  'order.retried': { run: number; customerId: string; previousStatus: string; reason: string };
}

export type PaymentFailureCode = 'DECLINED' | 'DEADLINE_EXCEEDED';

export interface EventEnvelope<T extends EventType = EventType> {
  id: string;
  type: T;
  version: number;
  occurredAt: string;
  orderId: string;
  correlationId: string;
  data: EventData[T];
}

export function buildEvent<T extends EventType>(
  type: T,
  fields: { id: string; orderId: string; correlationId: string; occurredAt?: Date; data: EventData[T] },
): EventEnvelope<T> {
  return {
    id: fields.id,
    type,
    version: EVENT_VERSION,
    occurredAt: (fields.occurredAt ?? new Date()).toISOString(),
    orderId: fields.orderId,
    correlationId: fields.correlationId,
    data: fields.data,
  };
}

/**
 * The id of an event that happens at most once per saga run: a name-based UUID (RFC 9562 §5.5
 * layout over SHA-256) of the order, the run and the type. A retried activity, a reset run or a
 * stray run of the same run derives the same id, so the outbox writes the event once; a retried
 * order (a new run) gets ids of its own. Run 1 keeps the name used before runs existed.
 */
export function runEventId(orderId: string, run: number, type: EventType): string {
  const name = run === 1 ? `acme-orders:${orderId}:${type}` : `acme-orders:${orderId}:run-${run}:${type}`;
  const h = createHash('sha256').update(name).digest();
  h[6] = (h[6]! & 0x0f) | 0x50; // version 5 layout (name-based)
  h[8] = (h[8]! & 0x3f) | 0x80; // RFC variant
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
