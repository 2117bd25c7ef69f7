/**
 * The HTTP API as a value: `createApp(deps)` wires middleware and one router per resource over
 * injected dependencies, and does no I/O itself. `main.ts` serves it; tests call `app.request()`.
 */
import { OpenAPIHono } from '@hono/zod-openapi';
import { HTTPException } from 'hono/http-exception';
import { rateLimiter } from 'hono-rate-limiter';
import { loadConfig } from '../lib/config.js';
import { apiMetrics, createRegistry } from '../lib/metrics.js';
import { isDataError, isTransientDatabaseError } from '../db/pool.js';
import { authenticate, callerKey } from './auth.js';
import type { AppDeps, AppEnv } from './env.js';
import { ApiError, codeForStatus, type ErrorBody } from './errors.js';
import { BEARER_SCHEME } from './schemas.js';
import { correlationId } from './middleware/correlation.js';
import { requestLogger } from './middleware/request-logger.js';
import { traceRoute } from './middleware/trace-route.js';
import { analyticsRouter } from './routes/analytics.js';
import { docsRouter } from './routes/docs.js';
import { healthRouter } from './routes/health.js';
import { ordersRouter } from './routes/orders.js';
import { productsRouter } from './routes/products.js';

/** Seconds a 503 tells its client to wait (`Retry-After`): an outage, retried after a while. */
const RETRY_AFTER_S = '5';

export const OPENAPI_INFO = {
  title: 'Acme orders API',
  version: '1.0.0',
  description:
    'Places and tracks orders processed by an event-driven, Temporal-orchestrated saga. Errors are ' +
    '`{"error":{"code","message","fields?"}}`; validation errors name each field (e.g. `items[0].qty`). ' +
    'Unknown request fields are rejected. Every response carries `X-Correlation-Id` (yours, if you sent a valid one). ' +
    'Every route but the probes, `/metrics` and the docs needs `Authorization: Bearer <JWT>`: a customer token ' +
    '(`sub` = customer id) sees and changes only its own orders; an operator token sees all and alone may retry. ' +
    'Writes are rate-limited per caller (429 with `Retry-After`).',
};

export function createApp(appDeps: AppDeps) {
  const metrics = apiMetrics(appDeps.registry ?? createRegistry({ defaultMetrics: false }));
  const deps = { ...appDeps, metrics };
  const app = new OpenAPIHono<AppEnv>();

  app.use(
    correlationId({ logger: deps.logger }),
    requestLogger({ quietPaths: new Set(['/health', '/ready', '/metrics']) }),
    traceRoute(),
  );

  // Everything that touches orders, the catalogue or the figures needs a token; the probes,
  // `/metrics`, `/openapi.json` and `/docs` stay open (they say nothing about anyone's orders).
  const auth = authenticate({ authenticator: deps.authenticator });
  // (`/orders/*` also matches `/orders` itself: listing both would run the middleware twice.)
  for (const path of ['/orders/*', '/products/*', '/analytics/*']) app.use(path, auth);
  const limits = deps.rateLimit ?? {
    writes: DEFAULT_LIMITS.RATE_LIMIT_WRITES,
    windowMs: DEFAULT_LIMITS.RATE_LIMIT_WINDOW_MS,
  };
  // Per caller, not per address: behind a proxy every customer shares one address, and one token
  // spread over many addresses is still one caller. Reads are cheap keyset queries and stay unlimited.
  const writeLimiter = rateLimiter<AppEnv>({
    windowMs: limits.windowMs,
    limit: limits.writes,
    standardHeaders: 'draft-6',
    keyGenerator: (c) => callerKey(c.var.principal),
    skip: (c) => c.req.method !== 'POST',
    handler: () => {
      throw new ApiError(
        429,
        'rate_limited',
        `Too many writes: at most ${limits.writes} per ${limits.windowMs / 1000} s per caller; retry after the time in Retry-After.`,
      );
    },
  });
  app.use('/orders/*', writeLimiter);

  app.openAPIRegistry.registerComponent('securitySchemes', BEARER_SCHEME, {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description:
      'A JWT from the configured OIDC provider, or locally from `npm run -s token -- <customer-id>` ' +
      '(or `-- --operator`).',
  });

  // Prometheus scrapes this; open like /health (it says nothing about any one order).
  app.get('/metrics', async (c) => {
    c.header('Content-Type', metrics.registry.contentType);
    c.header('Cache-Control', 'no-store');
    return c.body(await metrics.registry.metrics());
  });
  app.route('/orders', ordersRouter(deps));
  app.route('/products', productsRouter(deps));
  app.route('/analytics', analyticsRouter(deps));
  app.route('/', healthRouter(deps));
  app.route('/', docsRouter());

  // Built on first request, then reused: the routes cannot change after start-up.
  let document: ReturnType<typeof app.getOpenAPIDocument> | undefined;
  app.get('/openapi.json', (c) => {
    document ??= app.getOpenAPIDocument({
      openapi: '3.0.3',
      info: OPENAPI_INFO,
      tags: TAGS,
      // Every operation needs the token unless it says otherwise (the probes declare `security: []`).
      security: [{ [BEARER_SCHEME]: [] }],
    });
    return c.json(document);
  });

  app.notFound((c) => {
    // A path that exists under other methods is a 405 with `Allow`, not a 404 (RFC 9110 §15.5.6).
    const allowed = allowedMethods(app.routes, c.req.path);
    if (allowed.length > 0) {
      c.header('Allow', allowed.join(', '));
      return c.json<ErrorBody>(
        {
          error: {
            code: 'method_not_allowed',
            message: `${c.req.method} is not supported on ${c.req.path}; use ${allowed.join(' or ')}.`,
          },
        },
        405,
      );
    }
    return c.json<ErrorBody>(
      { error: { code: 'not_found', message: `No route for ${c.req.method} ${c.req.path}; see GET /docs.` } },
      404,
    );
  });

  app.onError((err, c) => {
    if (err instanceof ApiError) {
      // Every 503 is an outage a client should retry after a while, as the OpenAPI document says.
      if (err.status === 503) c.header('Retry-After', RETRY_AFTER_S);
      return c.json(err.toBody(), err.status);
    }
    if (err instanceof HTTPException && err.status < 500) {
      // Raised by Hono itself (e.g. its validator's "Malformed JSON"): already safe to show.
      return c.json<ErrorBody>(
        { error: { code: codeForStatus(err.status), message: err.message } },
        err.status,
      );
    }
    const log = c.var.log ?? deps.logger;
    if (isTransientDatabaseError(err)) {
      // An outage, not a bug: say so, and that retrying is the answer (with Idempotency-Key, safely).
      log.warn({ err, method: c.req.method, path: c.req.path }, 'database unavailable');
      c.header('Retry-After', RETRY_AFTER_S);
      return c.json<ErrorBody>(
        { error: { code: 'unavailable', message: 'The database is unavailable; retry shortly.' } },
        503,
      );
    }
    if (isDataError(err)) {
      // PostgreSQL refused a value only the request can have brought (validation should have caught
      // it first: logged as the gap it is). The client's request is what is wrong, so a 400, never
      // a 500 that a client could trigger at will.
      log.error({ err, method: c.req.method, path: c.req.path }, 'request value refused by PostgreSQL');
      return c.json<ErrorBody>(
        {
          error: {
            code: 'validation_failed',
            message:
              'A value in the request cannot be stored or compared; check its dates, numbers and text.',
          },
        },
        400,
      );
    }
    // A bug: log everything, tell the client nothing but the correlation id.
    log.error({ err, method: c.req.method, path: c.req.path }, 'unhandled error');
    return c.json<ErrorBody>(
      {
        error: {
          code: 'internal',
          message: `Internal server error; quote correlation id ${c.var.correlationId ?? 'n/a'} when reporting it.`,
        },
      },
      500,
    );
  });

  return app;
}

const TAGS = [
  { name: 'orders', description: 'Place, track and cancel orders.' },
  { name: 'products', description: 'The catalogue.' },
  { name: 'operations', description: 'Liveness and readiness probes.' },
];

export type App = ReturnType<typeof createApp>;

/** The configured defaults (parsed from no environment at all), for apps built without a config. */
const DEFAULT_LIMITS = loadConfig({});

/** Methods registered for `path` (middleware, registered for ALL, does not count). */
function allowedMethods(routes: ReadonlyArray<{ method: string; path: string }>, path: string): string[] {
  const methods = new Set<string>();
  for (const route of routes) {
    if (route.method === 'ALL') continue;
    const pattern = route.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:[^/]+/g, '[^/]+');
    if (new RegExp(`^${pattern}$`).test(path)) methods.add(route.method); // routing is strict about `/`
  }
  if (methods.has('GET')) methods.add('HEAD');
  return [...methods].sort();
}
