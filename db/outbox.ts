/**
 * Writing events: always inside the transaction that makes the state change they describe, so an
 * event exists if and only if its change committed. The publisher (workers/outbox-publisher.ts)
 * sends them; nothing else talks to RabbitMQ on behalf of the core.
 */
import type { EventEnvelope } from '../lib/events.js';
import type { Queryable } from './pool.js';

/**
 * Inserts the event unless one with the same id exists. Returns false for a duplicate, which is how
 * a retried activity (same deterministic event id) avoids publishing a second event.
 */
export async function enqueueEvent(db: Queryable, event: EventEnvelope): Promise<boolean> {
  const { rowCount } = await db.query(
    `insert into event_outbox (event_id, type, order_id, payload, headers)
     values ($1::uuid, $2, $3::uuid, $4::jsonb, $5::jsonb)
     on conflict (event_id) do nothing`,
    [
      event.id,
      event.type,
      event.orderId,
      JSON.stringify(event),
      JSON.stringify({ correlationId: event.correlationId }),
    ],
  );
  return rowCount === 1;
}
