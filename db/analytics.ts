/**
 * The analytics subscriber's own tables (subscribers/analytics): what it learnt of each order from the
 * events, every money movement, and the summary computed from them (`GET /analytics/summary`).
 *
 * Events arrive at least once and in any order, so each write is a fold that ends in the same row
 * whatever the order of arrival: a final status is kept only when it occurred after both the final
 * status already known and the start of the latest run known (events carry no run number, so their
 * occurredAt places them: a run's events all occur after its order.retried); an order.retried clears
 * the final status of the runs before it, unless the new run's own end has already arrived. Callers
 * run the folds inside the transaction whose first statement is `recordEvent`: its upsert takes the
 * order's row lock, so two events of one order apply one after the other.
 */
import type { FinalStatus } from '../domain/order.js';
import { withClient, type Pool, type Queryable } from './pool.js';
import { freshEventCte } from './processed-events.js';

export type PaymentKind = 'captured' | 'refunded';

/** What every event tells about its order, and the money a payment event moved. */
export interface EventFact {
  /** The subscriber applying it, and the event's id: its dedupe record (db/processed-events.ts). */
  consumer: string;
  eventId: string;
  orderId: string;
  at: Date;
  amount?: string | undefined;
  currency?: string | undefined;
  payment?: { kind: PaymentKind; amount: string; currency: string; reference: string } | undefined;
  /** order.placed: when the order was placed; its total (amount, currency) then stands. */
  placedAt?: Date | undefined;
}

/**
 * The first write of every event, one statement: records the event id as applied by `consumer`
 * (`freshEventCte`), creates the order's row or widens the span of events seen, and records a
 * payment event's money movement and order.placed's time and total. False, changing nothing, when
 * the event was applied before. An event with nothing more to fold needs no transaction around it:
 * most of an order's events are one round trip, not a `BEGIN`, three statements and a `COMMIT`.
 */
export async function recordEvent(db: Queryable, fact: EventFact): Promise<boolean> {
  const { payment } = fact;
  const { rowCount } = await db.query(
    `with ${freshEventCte(5, 6)}, payment as (
       insert into analytics_payments (event_id, order_id, kind, amount, currency, reference, occurred_at)
       select event_id, $1::uuid, $7, $8::numeric, $9, $10, $4::timestamptz from fresh where $7::text is not null
       on conflict (event_id) do nothing
     )
     insert into analytics_orders (order_id, amount, currency, placed_at, first_event_at, last_event_at)
     select $1::uuid, $2::numeric, $3, $11::timestamptz, $4::timestamptz, $4::timestamptz from fresh
     on conflict (order_id) do update set
       placed_at = coalesce(excluded.placed_at, analytics_orders.placed_at),
       amount = case when excluded.placed_at is not null then excluded.amount
                     else coalesce(analytics_orders.amount, excluded.amount) end,
       currency = case when excluded.placed_at is not null then excluded.currency
                       else coalesce(analytics_orders.currency, excluded.currency) end,
       first_event_at = least(analytics_orders.first_event_at, excluded.first_event_at),
       last_event_at = greatest(analytics_orders.last_event_at, excluded.last_event_at)`,
    [
      fact.orderId,
      fact.amount ?? null,
      fact.currency ?? null,
      fact.at,
      fact.consumer,
      fact.eventId,
      payment?.kind ?? null,
      payment?.amount ?? null,
      payment?.currency ?? null,
      payment?.reference ?? null,
      fact.placedAt ?? null,
    ],
  );
  return rowCount === 1;
}

/**
 * order.retried: run `run` began at `at`. Clears a final status that occurred before it (an older
 * run's). False when a run as new or newer is already known (a late or replayed retry).
 */
export async function recordRunStarted(
  tx: Queryable,
  fact: { orderId: string; run: number; at: Date },
): Promise<boolean> {
  const { rowCount } = await tx.query(
    `update analytics_orders set
       run = $2, run_started_at = $3::timestamptz,
       final_status = case when final_at > $3::timestamptz then final_status end,
       failure_reason = case when final_at > $3::timestamptz then failure_reason end,
       failure_detail = case when final_at > $3::timestamptz then failure_detail end,
       final_at = case when final_at > $3::timestamptz then final_at end
     where order_id = $1::uuid and run < $2`,
    [fact.orderId, fact.run, fact.at],
  );
  return rowCount === 1;
}

/**
 * A final event (order.completed, order.out_of_stock, payment.failed, order.cancelled). False when
 * it is older than the final status already known or than the latest run's start: an older run's.
 */
export async function recordFinalStatus(
  tx: Queryable,
  fact: {
    orderId: string;
    status: FinalStatus;
    at: Date;
    reason?: string | undefined;
    detail?: string | undefined;
  },
): Promise<boolean> {
  const { rowCount } = await tx.query(
    `update analytics_orders set
       final_status = $2, final_at = $3::timestamptz, failure_reason = $4, failure_detail = $5
     where order_id = $1::uuid
       and (final_at is null or final_at < $3::timestamptz)
       and (run_started_at is null or run_started_at < $3::timestamptz)`,
    [fact.orderId, fact.status, fact.at, fact.reason ?? null, fact.detail ?? null],
  );
  return rowCount === 1;
}

// ------------------------------------------------------------------------------------------ summary

/** Where an order stands in the summary: its latest run's final status, or still running. */
export type SummaryStatus = FinalStatus | 'IN_PROGRESS';

export interface AnalyticsSummary {
  /** Orders by the hour (UTC) they were placed and their latest run's final status. */
  ordersByHour: Array<{ hour: string; status: SummaryStatus; count: number }>;
  /** Money by when it moved. Decimal strings. */
  revenue: Array<{ currency: string; captured: string; refunded: string; net: string }>;
  /** Orders whose latest run ended other than COMPLETED, by reason. */
  failureReasons: Array<{ reason: string; count: number }>;
  /** From placed to the latest run's final status; null statistics when no order qualifies. */
  timeToFinal: {
    count: number;
    avgSeconds: number | null;
    p50Seconds: number | null;
    p95Seconds: number | null;
  };
}

/** `[from, to)`; either end may be open. */
export interface SummaryWindow {
  from?: Date | undefined;
  to?: Date | undefined;
}

// When an order counts as placed: order.placed's time, or its first event's until that arrives.
const PLACED = 'coalesce(placed_at, first_event_at)';
const inWindow = (column: string) =>
  `($1::timestamptz is null or ${column} >= $1::timestamptz) and ($2::timestamptz is null or ${column} < $2::timestamptz)`;

/**
 * The payments (alias `p`) the money figures count, in the summary and the gauges alike: every
 * capture, and a refund only of a capture that was announced (one the saga gave back before announcing
 * it took nothing, so it gives nothing back).
 */
const COUNTED_PAYMENT = `(p.kind = 'captured' or exists (
  select 1 from analytics_payments c where c.kind = 'captured' and c.reference = p.reference))`;

/**
 * The summary over the orders placed in `window` (orders, failure reasons, time to final) and the
 * payments made in it (revenue), read in one snapshot. A refund counts only against a capture whose
 * payment.completed was seen (same gateway reference): a capture the saga gave back at once, without
 * ever announcing it, took nothing.
 */
export async function analyticsSummary(pool: Pool, window: SummaryWindow = {}): Promise<AnalyticsSummary> {
  const params = [window.from ?? null, window.to ?? null];
  return withClient(pool, async (client) => {
    await client.query('begin isolation level repeatable read read only');
    try {
      const byHour = await client.query<{ hour: Date; status: SummaryStatus; count: number }>(
        `select date_trunc('hour', ${PLACED}, 'UTC') as hour, coalesce(final_status, 'IN_PROGRESS') as status,
                count(*)::int as count
         from analytics_orders
         where ${inWindow(PLACED)}
         group by 1, 2
         order by 1, 2`,
        params,
      );
      const revenue = await client.query<AnalyticsSummary['revenue'][number]>(
        `select currency, captured::text, refunded::text, (captured - refunded)::text as net
         from (
           select p.currency::text as currency,
                  coalesce(sum(p.amount) filter (where p.kind = 'captured'), 0)::numeric(20, 2) as captured,
                  coalesce(sum(p.amount) filter (where p.kind = 'refunded'), 0)::numeric(20, 2) as refunded
           from analytics_payments p
           where ${inWindow('p.occurred_at')}
             and ${COUNTED_PAYMENT}
           group by p.currency
         ) totals
         order by currency`,
        params,
      );
      const reasons = await client.query<{ reason: string; count: number }>(
        `select coalesce(failure_reason, lower(final_status)) as reason, count(*)::int as count
         from analytics_orders
         where final_status <> 'COMPLETED' and ${inWindow(PLACED)}
         group by 1
         order by 2 desc, 1`,
        params,
      );
      const timing = await client.query<AnalyticsSummary['timeToFinal']>(
        `select count(*)::int as "count", avg(seconds) as "avgSeconds",
                percentile_cont(0.5) within group (order by seconds) as "p50Seconds",
                percentile_cont(0.95) within group (order by seconds) as "p95Seconds"
         from (
           select extract(epoch from final_at - placed_at)::float8 as seconds
           from analytics_orders
           where final_status is not null and placed_at is not null and ${inWindow('placed_at')}
         ) finished`,
        params,
      );
      await client.query('commit');
      return {
        ordersByHour: byHour.rows.map((r) => ({
          hour: r.hour.toISOString(),
          status: r.status,
          count: r.count,
        })),
        revenue: revenue.rows,
        failureReasons: reasons.rows,
        timeToFinal: timing.rows[0]!,
      };
    } catch (err) {
      await client.query('rollback').catch(() => {});
      throw err;
    }
  });
}

// ------------------------------------------------------------------------------------------ metrics

/** What the analytics subscriber exports as gauges (all time; money in the currency's units). */
export interface AnalyticsTotals {
  ordersByStatus: Array<{ status: SummaryStatus; count: number }>;
  revenue: Array<{ currency: string; captured: number; refunded: number }>;
  failureReasons: Array<{ reason: string; count: number }>;
}

/**
 * Totals over everything the subscriber has seen, for a scrape: three aggregates over its own
 * tables (a sequential scan each; ~10 ms at 100 000 orders), no window. Money becomes a float here
 * only because a Prometheus sample is one; the summary route keeps it exact.
 */
export async function analyticsTotals(pool: Pool): Promise<AnalyticsTotals> {
  const [orders, revenue, reasons] = await Promise.all([
    pool.query<{ status: SummaryStatus; count: number }>(
      `select coalesce(final_status, 'IN_PROGRESS') as status, count(*)::int as count
       from analytics_orders group by 1`,
    ),
    // As the summary counts them (COUNTED_PAYMENT).
    pool.query<{ currency: string; captured: number; refunded: number }>(
      `select p.currency::text as currency,
              coalesce(sum(p.amount) filter (where p.kind = 'captured'), 0)::float8 as captured,
              coalesce(sum(p.amount) filter (where p.kind = 'refunded'), 0)::float8 as refunded
       from analytics_payments p
       where ${COUNTED_PAYMENT}
       group by 1`,
    ),
    // The metric's reason is the coarse kind (ANALYTICS_FAILURE_KINDS), not the summary's label with
    // its leading words: a Prometheus label must stay within a known, small set.
    pool.query<{ reason: string; count: number }>(
      `select case final_status
                when 'OUT_OF_STOCK' then 'out_of_stock'
                when 'CANCELLED' then 'cancelled'
                else lower(split_part(coalesce(failure_reason, 'unknown'), ':', 1))
              end as reason,
              count(*)::int as count
       from analytics_orders where final_status <> 'COMPLETED' group by 1`,
    ),
  ]);
  return { ordersByStatus: orders.rows, revenue: revenue.rows, failureReasons: reasons.rows };
}
