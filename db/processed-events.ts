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

/**
 * The same record as `markProcessed`, as the first part of a statement that applies the event, so
 * the record and the effect are one round trip and commit together without a transaction around
 * them: `with ${freshEventCte(…)} …` yields the event's id once, when it is new, for the rest of the
 * statement to read (`… from fresh`); for a duplicate it yields nothing and the statement changes
 * nothing. `consumer` and `eventId` are the numbers of the statement's parameters holding them.
 */
export function freshEventCte(consumer: number, eventId: number): string {
  return `fresh as (
       insert into processed_events (consumer, event_id) values ($${consumer}, $${eventId}::uuid)
       on conflict (consumer, event_id) do nothing
       returning event_id
     )`;
}
