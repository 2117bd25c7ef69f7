/**
 * Writing events: always inside the transaction that makes the state change they describe, so an
 * event exists if and only if its change committed. The publisher (workers/outbox-publisher.ts)
 * sends them; nothing else talks to RabbitMQ on behalf of the core.
 */
import type pg from 'pg';
import type { EventEnvelope } from '../lib/events.js';
import { traceContextHeaders } from '../lib/tracing.js';
import type { Queryable } from './pool.js';
import { isoText } from './timestamps.js';

/** The NOTIFY channel the insert trigger signals on (migration 000001). */
export const OUTBOX_CHANNEL = 'event_outbox';

/**
 * Inserts the event unless one with the same id exists. Returns false for a duplicate, which is how
 * a retried activity (same deterministic event id) avoids publishing a second event. The row's
 * headers keep the active trace context (none with tracing off), so the event's trace continues from
 * the request or activity that wrote it, whenever it is published. The order's timeline
 * (`order_events`, kept when published rows are pruned) is asked too, so an event id once written is
 * never written again, however long ago its outbox row went.
 */
export async function enqueueEvent(db: Queryable, event: EventEnvelope): Promise<boolean> {
  const { rowCount } = await db.query(
    // `occurredAt` from the database's clock (the transaction's start), as order.placed's: the
    // events of one order are written by several hosts (the worker's, the API's, an operator's CLI),
    // and a consumer that orders a retry against a run's end (analytics) must not see their clocks'
    // skew as a run ending before it began.
    `insert into event_outbox (event_id, type, order_id, payload, headers)
     select $1::uuid, $2, $3::uuid, ${stampedWithDatabaseTime('$4::jsonb')}, $5::jsonb
      where not exists (select 1 from order_events where event_id = $1::uuid)
     on conflict (event_id) do nothing`,
    [event.id, event.type, event.orderId, JSON.stringify(event), outboxHeaders(event)],
  );
  return rowCount === 1;
}

/**
 * SQL for an event envelope (`payload`, a jsonb expression) with its `occurredAt` set to the
 * database's clock at the transaction's start: every event of an order gets its time from one clock,
 * whichever host wrote it.
 */
export const stampedWithDatabaseTime = (payload: string): string =>
  `jsonb_set(${payload}, '{occurredAt}', to_jsonb(${isoText('now()')}))`;

/**
 * The row's `headers` (JSON text): the correlation id and the active trace context, which the
 * publisher sends as AMQP headers so the event's trace continues from the code that wrote it.
 */
export function outboxHeaders(event: Pick<EventEnvelope, 'correlationId'>): string {
  return JSON.stringify({ correlationId: event.correlationId, ...traceContextHeaders() });
}

export interface OutboxRow {
  id: string;
  event_id: string;
  type: string;
  payload: Record<string, unknown>;
  headers: Record<string, unknown>;
  created_at: Date;
}

/**
 * Up to $1 due events, oldest first, locked until the transaction ends; `skip locked` lets several
 * publishers share the table without waiting on each other. Read through the partial index
 * `event_outbox_pending_id_idx` (migration 000013), in the order it keeps.
 */
export const CLAIM_DUE_EVENTS = `select id, event_id, type, payload, headers, created_at
     from event_outbox
     where status = 'PENDING' and available_at <= now()
     order by id
     limit $1
     for update skip locked`;

/** Claims up to `limit` due events (CLAIM_DUE_EVENTS). */
export async function claimDueEvents(tx: Queryable, limit: number): Promise<OutboxRow[]> {
  const { rows } = await tx.query<OutboxRow>(CLAIM_DUE_EVENTS, [limit]);
  return rows;
}

export async function markPublished(tx: Queryable, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await tx.query(
    `update event_outbox set status = 'PUBLISHED', published_at = clock_timestamp(), last_error = null
     where id = any($1::bigint[])`,
    [ids],
  );
}

/** Failed publishes wait base·2^attempts (at most `maxMs`) before their next try: no hot loop. */
export async function scheduleRetries(
  tx: Queryable,
  ids: string[],
  errors: string[],
  backoff: { baseMs: number; maxMs: number },
): Promise<void> {
  await tx.query(
    `update event_outbox as o
     set attempts = o.attempts + 1,
         last_error = f.error,
         available_at = clock_timestamp()
           + least($3::float8 * power(2, least(o.attempts, 30)), $4::float8) * interval '1 millisecond'
     from unnest($1::bigint[], $2::text[]) as f(id, error)
     where o.id = f.id`,
    [ids, errors, backoff.baseMs, backoff.maxMs],
  );
}

export interface PendingStats {
  pending: number;
  /** Seconds since the oldest unpublished event was written; 0 when none is. */
  oldestAgeSeconds: number;
}

/**
 * How far the publisher is behind, for the metrics scrape: a count over the pending rows (the partial
 * index `event_outbox_pending_id_idx` holds only those), which stay few while the publisher keeps up.
 */
export async function pendingStats(db: Queryable): Promise<PendingStats> {
  const { rows } = await db.query<PendingStats>(
    `select count(*)::int as "pending",
            coalesce(extract(epoch from now() - min(created_at)), 0)::float8 as "oldestAgeSeconds"
       from event_outbox
      where status = 'PENDING'`,
  );
  return rows[0]!;
}

/** Subscribes a dedicated connection to the outbox's NOTIFY channel. */
export async function listenForEvents(client: pg.Client): Promise<void> {
  await client.query(`listen ${OUTBOX_CHANNEL}`);
}
