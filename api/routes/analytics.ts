/**
 * /analytics: read-only figures over every order, from the analytics subscriber's tables
 * (subscribers/analytics, db/analytics.ts). They follow the events, so they lag the orders by as
 * long as the events take to arrive.
 */
import { createRoute } from '@hono/zod-openapi';
import type { AppDeps } from '../env.js';
import { analyticsSummary } from '../../db/analytics.js';
import { createRouter } from '../router.js';
import {
  AnalyticsSummaryQuerySchema,
  AnalyticsSummarySchema,
  authResponses,
  bearerSecurity,
  errorResponse,
} from '../schemas.js';
import { operatorsOnly } from '../auth.js';

export function analyticsRouter(deps: Pick<AppDeps, 'pool'>) {
  const router = createRouter();

  const summaryRoute = createRoute({
    method: 'get',
    path: '/summary',
    tags: ['analytics'],
    security: bearerSecurity,
    middleware: [operatorsOnly('read the analytics')],
    summary: 'Orders by hour and final status, revenue, failure reasons, time to final',
    description:
      'Orders (and their failure reasons and time to final) count when they were placed in ' +
      '[`from`, `to`); revenue counts payments made in it. A retried order counts once, with its ' +
      "latest run's status. Computed from the events the analytics subscriber has received. " +
      'Operators only: the figures span every customer.',
    request: { query: AnalyticsSummaryQuerySchema },
    responses: {
      200: {
        description: 'The summary.',
        content: { 'application/json': { schema: AnalyticsSummarySchema } },
      },
      400: errorResponse('`from` or `to` is not an ISO 8601 timestamp, or `to` is not after `from`.'),
      ...authResponses,
    },
  });
  router.openapi(summaryRoute, async (c) => {
    const { from, to } = c.req.valid('query');
    const summary = await analyticsSummary(deps.pool, {
      from: from === undefined ? undefined : new Date(from),
      to: to === undefined ? undefined : new Date(to),
    });
    c.header('Cache-Control', 'no-store');
    return c.json(summary, 200);
  });

  return router;
}
