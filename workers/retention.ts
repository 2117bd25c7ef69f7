/**
 * The retention job: every RETENTION_INTERVAL_MS, prunes published outbox rows, consumers' dedupe
 * records and orders' idempotency keys older than their settings (db/retention.ts), batch by batch
 * until none is left, then sleeps. It runs inside the outbox publisher's process: that process owns
 * the outbox, runs wherever the system runs (locally, in every deployment), and already holds a pool,
 * so no extra process, manifest or probe to keep; several instances prune side by side harmlessly
 * (`skip locked`, idempotent deletes). The dead-letter queues are never touched.
 */
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import { expireIdempotencyKeys, prunePublishedEvents, pruneProcessedEvents } from '../db/retention.js';
import type { Pool } from '../db/pool.js';

export type RetentionConfig = Pick<
  Config,
  | 'RETENTION_INTERVAL_MS'
  | 'OUTBOX_RETENTION_MS'
  | 'PROCESSED_EVENTS_RETENTION_MS'
  | 'IDEMPOTENCY_KEY_RETENTION_HOURS'
>;

export interface RetentionResult {
  outboxRows: number;
  processedEvents: number;
  idempotencyKeys: number;
}

/** Rows per statement: short statements, short row locks, well inside the statement timeout. */
const BATCH = 1000;

/** One full pass: each kind pruned batch by batch until a batch comes back short. */
export async function runRetention(pool: Pool, config: RetentionConfig): Promise<RetentionResult> {
  const drain = async (
    prune: (args: { olderThanMs: number; limit: number }) => Promise<number>,
    olderThanMs: number,
  ) => {
    let total = 0;
    for (;;) {
      const n = await prune({ olderThanMs, limit: BATCH });
      total += n;
      if (n < BATCH) return total;
    }
  };
  return {
    outboxRows: await drain((a) => prunePublishedEvents(pool, a), config.OUTBOX_RETENTION_MS),
    processedEvents: await drain((a) => pruneProcessedEvents(pool, a), config.PROCESSED_EVENTS_RETENTION_MS),
    idempotencyKeys: await drain(
      (a) => expireIdempotencyKeys(pool, a),
      config.IDEMPOTENCY_KEY_RETENTION_HOURS * 3600_000,
    ),
  };
}

export interface RetentionJob {
  stop(): Promise<void>;
}

/**
 * Runs `runRetention` a minute after start (not in the rush of a start-up) and then every interval;
 * a failed pass (the database away) is logged and tried again at the next one.
 */
export function startRetentionJob(
  { pool, config, logger }: { pool: Pool; config: RetentionConfig; logger: Logger },
  { firstRunMs = Math.min(60_000, config.RETENTION_INTERVAL_MS) }: { firstRunMs?: number } = {},
): RetentionJob {
  let running: Promise<void> | undefined;
  let stopped = false;
  const pass = async () => {
    try {
      const result = await runRetention(pool, config);
      const pruned = result.outboxRows + result.processedEvents + result.idempotencyKeys;
      logger[pruned > 0 ? 'info' : 'debug'](result, 'retention: pruned what had outlived its settings');
    } catch (err) {
      logger.warn(
        { err: (err as Error).message },
        'retention pass failed; trying again at the next interval',
      );
    }
  };
  const schedule = (ms: number): NodeJS.Timeout =>
    setTimeout(() => {
      running = pass().finally(() => {
        running = undefined;
        if (!stopped) timer = schedule(config.RETENTION_INTERVAL_MS);
      });
    }, ms).unref();
  let timer = schedule(firstRunMs);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
