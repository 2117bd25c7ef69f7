/**
 * Probes for orchestrators: `/health` says the process is alive (no I/O, so a slow database never
 * gets a healthy process killed); `/ready` says it can serve, i.e. every dependency answers.
 */
import { createRoute } from '@hono/zod-openapi';
import type { Logger } from '../../lib/logger.js';
import type { AppDeps, Probe } from '../env.js';
import { createRouter } from '../router.js';
import { HealthSchema, ReadinessSchema } from '../schemas.js';

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

export function healthRouter(deps: Pick<AppDeps, 'checks' | 'readyTimeoutMs'>) {
  const router = createRouter();
  const timeoutMs = deps.readyTimeoutMs ?? 2_000;

  const healthRoute = createRoute({
    method: 'get',
    path: '/health',
    tags: ['operations'],
    summary: 'Liveness: the process answers (no dependency is checked)',
    responses: { 200: { description: 'Alive.', content: { 'application/json': { schema: HealthSchema } } } },
  });
  router.openapi(healthRoute, (c) => c.json({ status: 'ok' as const }, 200));

  const readyRoute = createRoute({
    method: 'get',
    path: '/ready',
    tags: ['operations'],
    summary: 'Readiness: PostgreSQL, RabbitMQ and Temporal all answer',
    responses: {
      200: {
        description: 'Every dependency is up.',
        content: { 'application/json': { schema: ReadinessSchema } },
      },
      503: {
        description: 'At least one dependency is down; `checks` says which.',
        content: { 'application/json': { schema: ReadinessSchema } },
      },
    },
  });
  router.openapi(readyRoute, async (c) => {
    const entries = await Promise.all(
      Object.entries(deps.checks).map(
        async ([name, probe]) => [name, await runProbe(name, probe, timeoutMs, c.var.log)] as const,
      ),
    );
    const checks = Object.fromEntries(entries);
    const ready = entries.every(([, result]) => result.status === 'up');
    c.header('Cache-Control', 'no-store');
    return ready
      ? c.json({ status: 'ready' as const, checks }, 200)
      : c.json({ status: 'not_ready' as const, checks }, 503);
  });

  return router;
}
