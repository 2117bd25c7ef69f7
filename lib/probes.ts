/**
 * Readiness probes, shared by the API's `GET /ready` and the other processes' probe servers
 * (lib/http-probe-server.ts). Each probe does the cheapest check that proves its dependency answers,
 * over a connection the process already holds: a probe never opens a connection of its own, so an
 * orchestrator polling `/ready` every second costs the servers nothing.
 */
import type { AmqpConnectionManager } from 'amqp-connection-manager';
import type { Logger } from './logger.js';
import { ping, type Pool } from '../db/pool.js';

/** Resolves when its dependency answers, rejects (or hangs) otherwise; `signal` aborts on timeout. */
export type Probe = (signal: AbortSignal) => Promise<void>;

export interface ProbeResult {
  status: 'up' | 'down';
  ms: number;
  error?: 'timeout' | 'failed';
}

/** Runs one probe against a deadline; on timeout its signal is aborted so it can clean up. */
export async function runProbe(
  name: string,
  probe: Probe,
  timeoutMs: number,
  log: Logger,
): Promise<ProbeResult> {
  const controller = new AbortController();
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const elapsed = () => Math.round(performance.now() - started);
  try {
    const outcome = await Promise.race([
      probe(controller.signal).then(() => 'up' as const),
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs);
      }),
    ]);
    if (outcome === 'up') return { status: 'up', ms: elapsed() };
    log.warn({ dependency: name, timeoutMs }, 'readiness probe timed out');
    return { status: 'down', ms: elapsed(), error: 'timeout' };
  } catch (err) {
    log.warn({ dependency: name, err }, 'readiness probe failed');
    return { status: 'down', ms: elapsed(), error: 'failed' };
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}

export interface Readiness {
  ready: boolean;
  checks: Record<string, ProbeResult>;
}

/**
 * Readiness as every caller of `/ready` sees it: one check at a time, however many ask, and its answer
 * reused for `maxAgeMs`. `/ready` needs no token, so a flood of it must not cost a `select 1` and a
 * Temporal call each, nor take the pool connections real requests need.
 */
export function sharedReadiness(
  checks: Record<string, Probe>,
  timeoutMs: number,
  { maxAgeMs = 1_000 }: { maxAgeMs?: number } = {},
): (log: Logger) => Promise<Readiness> {
  let inFlight: Promise<Readiness> | undefined;
  let last: { at: number; readiness: Readiness } | undefined;
  return (log) => {
    if (last && performance.now() - last.at < maxAgeMs) return Promise.resolve(last.readiness);
    // checkReadiness never rejects (every probe's failure is a result); were it to, the next caller
    // would check again rather than inherit the failure.
    return (inFlight ??= checkReadiness(checks, timeoutMs, log)
      .then((readiness) => {
        last = { at: performance.now(), readiness };
        return readiness;
      })
      .finally(() => {
        inFlight = undefined;
      }));
  };
}

/** Runs every probe at once; ready when all are up. */
export async function checkReadiness(
  checks: Record<string, Probe>,
  timeoutMs: number,
  log: Logger,
): Promise<Readiness> {
  const entries = await Promise.all(
    Object.entries(checks).map(
      async ([name, probe]) => [name, await runProbe(name, probe, timeoutMs, log)] as const,
    ),
  );
  return {
    ready: entries.every(([, result]) => result.status === 'up'),
    checks: Object.fromEntries(entries),
  };
}

/** One `select 1` on a pooled connection. */
export function postgresProbe(pool: Pool): Probe {
  return () => ping(pool);
}

/**
 * The state of the process's own reconnecting RabbitMQ connection (lib/amqp/connection.ts `connectAmqp`):
 * up while it is connected. Its heartbeat (5 s) notices a dead broker; no round trip of our own.
 */
export function rabbitmqProbe(manager: Pick<AmqpConnectionManager, 'isConnected'>): Probe {
  return async () => {
    if (!manager.isConnected()) throw new Error('not connected to RabbitMQ (reconnecting)');
  };
}

/** What a Temporal `Connection` (client) and a worker's `NativeConnection` both offer. */
export interface TemporalConnectionLike {
  workflowService: { getSystemInfo(request: object): Promise<unknown> };
  withDeadline<R>(deadline: number | Date, fn: () => Promise<R>): Promise<R>;
  withAbortSignal<R>(signal: AbortSignal, fn: () => Promise<R>): Promise<R>;
}

/**
 * `GetSystemInfo` on the process's own Temporal connection, or a failure while it has none yet
 * (a process that waits for Temporal at start-up). On timeout the caller aborts the signal, which
 * cancels the call instead of leaving it running.
 */
export function temporalProbe(
  connection: TemporalConnectionLike | (() => TemporalConnectionLike | undefined),
  timeoutMs: number,
): Probe {
  return async (signal) => {
    const current = typeof connection === 'function' ? connection() : connection;
    if (!current) throw new Error('not connected to Temporal yet');
    await current.withAbortSignal(signal, () =>
      current.withDeadline(Date.now() + timeoutMs, () => current.workflowService.getSystemInfo({})),
    );
  };
}
