/**
 * The bridge's admission window: at most BRIDGE_MAX_RUNNING_SAGAS order sagas running at once, as
 * Temporal counts them; a message past the window waits (unacknowledged, in the bridge) until runs
 * end.
 *
 * Why: after an outage the bridge finds a backlog (every order accepted meanwhile) and, unbounded,
 * starts every saga at once. Each then waits for its next workflow task behind the first tasks of
 * all the others, the worker's sticky cache (WORKER_MAX_CACHED_WORKFLOWS) evicts runs faster than
 * they finish, and every step of every order is replayed from history on a cold worker. Measured
 * (README "Performance"): 20 000 orders accepted while the pipeline was down drained at 2.5/s,
 * against 9/s in steady state. Within the window, started runs finish at the steady rate and the
 * rest wait as messages, where waiting costs nothing.
 *
 * The count is Temporal's own (running `orderSaga` executions on the task queue), read at most every
 * `refreshMs` and shared by every message waiting. Runs admitted since `graceMs` before the count
 * began are added to it: a start takes a moment and Temporal's count lags it, so a count alone would
 * let a burst through (some of those are in the count already: the window is then a little smaller
 * for a moment). A count is a query over the visibility store, whose cost grows with the executions
 * it holds (36 ms of the dev server's CPU at 22 000, twice a second through a backlog), so the next
 * one waits at least COUNT_SPACING times as long as the last successful one took.
 *
 * Only an outage can keep a message waiting longer than `maxWaitMs`: then it is admitted anyway (the
 * window is a limit on work, never a reason to hold an order back indefinitely, nor to hold a message
 * past the broker's consumer timeout). A count that fails (Temporal unreachable) admits: the start
 * itself then meets the outage and waits it out.
 */
import type { Logger } from '../lib/logger.js';

export interface AdmissionGateOptions {
  /** 0: no window. */
  maxRunning: number;
  /** The running sagas, as Temporal counts them. */
  countRunning: () => Promise<number>;
  logger: Logger;
  refreshMs?: number;
  graceMs?: number;
  maxWaitMs?: number;
}

export interface AdmissionGate {
  /**
   * Resolves when one more run may start; every call is one admission. Rejects once `signal` is
   * aborted (the bridge stopping), so a waiting message goes back to the queue at once.
   */
  admit(signal?: AbortSignal): Promise<void>;
}

export function createAdmissionGate({
  maxRunning,
  countRunning,
  logger,
  refreshMs = 500,
  graceMs = 2_000,
  maxWaitMs = 5 * 60_000,
}: AdmissionGateOptions): AdmissionGate {
  let counted = 0;
  let countedAt = Number.NEGATIVE_INFINITY;
  /** When the count in `counted` began: admissions since (less the grace) may be missing from it. */
  let countBeganAt = Number.POSITIVE_INFINITY;
  let lastCountMs = 0;
  let counting: Promise<void> | undefined;
  /** When each recent admission happened, oldest first. */
  const recent: number[] = [];
  let waiting = false;
  const refreshEveryMs = () => Math.max(refreshMs, lastCountMs * COUNT_SPACING);

  const running = (): number => {
    const from = Math.min(Date.now(), countBeganAt) - graceMs;
    while (recent.length > 0 && recent[0]! < from) recent.shift();
    return counted + recent.length;
  };

  /** One count at a time, however many messages wait for it. */
  const refresh = (): Promise<void> => {
    if (counting) return counting;
    const began = Date.now();
    return (counting = countRunning()
      .then((n) => {
        counted = n;
        countBeganAt = began;
        // A failed count's time (up to the start timeout, in an outage) says nothing of the store's size.
        lastCountMs = Date.now() - began;
      })
      .catch((err: unknown) => {
        logger.warn({ err }, 'cannot count the running sagas; admitting without the window');
        counted = 0;
      })
      .finally(() => {
        countedAt = Date.now();
        counting = undefined;
      }));
  };

  return {
    async admit(signal) {
      if (maxRunning <= 0) return;
      const since = Date.now();
      for (;;) {
        signal?.throwIfAborted();
        if (Date.now() - countedAt >= refreshEveryMs()) {
          // A count can take up to the start timeout; a stop does not wait for it.
          await untilAborted(refresh(), signal);
          signal?.throwIfAborted();
        }
        if (running() < maxRunning || Date.now() - since >= maxWaitMs) {
          recent.push(Date.now());
          if (waiting) {
            waiting = false;
            logger.info({ running: running(), maxRunning }, 'admission window open again: starting sagas');
          }
          return;
        }
        if (!waiting) {
          waiting = true;
          logger.info(
            { running: running(), maxRunning },
            'admission window full: new sagas wait for running ones to end',
          );
        }
        await untilAborted(delay(refreshEveryMs()), signal);
      }
    },
  };
}

/** A count's interval is at least this many times its duration: counting takes at most ~1/10 of the time. */
const COUNT_SPACING = 10;

/** Resolves when `work` settles, or sooner if `signal` is aborted (the loop then sees it). */
function untilAborted(work: Promise<unknown>, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      signal?.removeEventListener('abort', done);
      resolve();
    };
    signal?.addEventListener('abort', done, { once: true });
    work.then(done, done);
  });
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());
