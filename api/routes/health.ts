/**
 * Probes for orchestrators: `/health` says the process is alive (no I/O, so a slow database never
 * gets a healthy process killed); `/ready` says it can serve, i.e. every dependency answers (checked
 * at most once a second, however many ask: lib/probes.ts sharedReadiness).
 */
import { createRoute } from '@hono/zod-openapi';
import { sharedReadiness } from '../../lib/probes.js';
import type { AppDeps } from '../env.js';
import { createRouter } from '../router.js';
import { HealthSchema, ReadinessSchema } from '../schemas.js';

export function healthRouter(deps: Pick<AppDeps, 'checks' | 'readyTimeoutMs'>) {
  const router = createRouter();
  const readiness = sharedReadiness(deps.checks, deps.readyTimeoutMs ?? 2_000);

  const healthRoute = createRoute({
    method: 'get',
    path: '/health',
    security: [],
    tags: ['operations'],
    summary: 'Liveness: the process answers (no dependency is checked)',
    responses: { 200: { description: 'Alive.', content: { 'application/json': { schema: HealthSchema } } } },
  });
  router.openapi(healthRoute, (c) => c.json({ status: 'ok' as const }, 200));

  const readyRoute = createRoute({
    method: 'get',
    path: '/ready',
    security: [],
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
    const { ready, checks } = await readiness(c.var.log);
    c.header('Cache-Control', 'no-store');
    return ready
      ? c.json({ status: 'ready' as const, checks }, 200)
      : c.json({ status: 'not_ready' as const, checks }, 503);
  });

  return router;
}
