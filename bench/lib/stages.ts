/**
 * Where an order's time goes, from the timestamps the system itself records: the outbox rows of its
 * events (created in the transaction of each state change, stamped when published) and the bench's
 * own clocks at the POST and at the subscriber. Stages, in order:
 *
 *   api          POST sent → the API's transaction began (order + order.placed written)
 *   outbox in    order.placed written → published to RabbitMQ
 *   to saga      order.placed published → reserveInventory's transaction began (RabbitMQ, bridge,
 *                Temporal start, first workflow task, activity dispatch)
 *   saga         reserveInventory began → completeOrder's transaction began (charge with its timer,
 *                notify, the workflow tasks between them)
 *   outbox out   order.completed written → published
 *   subscriber   order.completed published → seen by the bench's queue
 *
 * Database times are transaction start times (now()) and publish times (clock_timestamp()) on the
 * same machine's clock as the bench's; differences of a millisecond or two are noise.
 */
import pg from 'pg';
import type { UnitResult } from './load.js';
import { percentile } from './stats.js';

export const STAGES = ['api', 'outbox in', 'to saga', 'saga', 'outbox out', 'subscriber'] as const;
export type Stage = (typeof STAGES)[number];
export type StageStats = Record<Stage, { p50: number; p95: number }>;

interface EventRow {
  order_id: string;
  type: string;
  created: number;
  published: number | null;
}

/**
 * @param epochOf converts the bench's clock (ms since its start) to epoch milliseconds.
 */
export async function stageBreakdown(
  databaseUrl: string,
  records: UnitResult[],
  epochOf: (ms: number) => number,
): Promise<StageStats | undefined> {
  const done = records.filter((r) => r.id && r.postedAt !== undefined && r.outcome === 'order.completed');
  if (done.length === 0) return undefined;
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'acme-bench-stages' });
  await client.connect();
  let rows: EventRow[];
  try {
    rows = (
      await client.query<EventRow>(
        `select order_id::text, type, extract(epoch from created_at) * 1000 as created,
                extract(epoch from published_at) * 1000 as published
           from event_outbox
          where order_id = any($1::uuid[]) and type in ('order.placed', 'inventory.reserved', 'order.completed')`,
        [done.map((r) => r.id)],
      )
    ).rows;
  } catch {
    return undefined; // the schema changed: no breakdown rather than a failed run
  } finally {
    await client.end();
  }
  const byOrder = new Map<string, Map<string, EventRow>>();
  for (const row of rows) {
    const events = byOrder.get(row.order_id) ?? new Map<string, EventRow>();
    events.set(row.type, {
      ...row,
      created: Number(row.created),
      published: row.published && Number(row.published),
    });
    byOrder.set(row.order_id, events);
  }
  const samples: Record<Stage, number[]> = Object.fromEntries(
    STAGES.map((s) => [s, []]),
  ) as unknown as Record<Stage, number[]>;
  for (const r of done) {
    const e = byOrder.get(r.id!);
    const placed = e?.get('order.placed');
    const reserved = e?.get('inventory.reserved');
    const completed = e?.get('order.completed');
    if (!placed?.published || !reserved || !completed?.published) continue;
    samples.api.push(placed.created - epochOf(r.postedAt!));
    samples['outbox in'].push(placed.published - placed.created);
    samples['to saga'].push(reserved.created - placed.published);
    samples.saga.push(completed.created - reserved.created);
    samples['outbox out'].push(completed.published - completed.created);
    samples.subscriber.push(epochOf(r.doneAt) - completed.published);
  }
  if (samples.api.length === 0) return undefined;
  const stats = {} as StageStats;
  for (const stage of STAGES) {
    const sorted = samples[stage].sort((a, b) => a - b);
    stats[stage] = { p50: Math.round(percentile(sorted, 50)), p95: Math.round(percentile(sorted, 95)) };
  }
  return stats;
}
