/**
 * Consumers' dedupe record: one row per (consumer, event id), written in the transaction that
 * applies the event, so a redelivered event is recognised and applied once.
 */
import type { Queryable } from './pool.js';

/** Records that `consumer` applied the event; false when it had already (a duplicate delivery). */
export async function markProcessed(tx: Queryable, consumer: string, eventId: string): Promise<boolean> {
  const { rowCount } = await tx.query(
    `insert into processed_events (consumer, event_id) values ($1, $2::uuid)
     on conflict (consumer, event_id) do nothing`,
    [consumer, eventId],
  );
  return rowCount === 1;
}
