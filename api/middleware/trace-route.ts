/**
 * Names the request's server span (started by the http instrumentation, which knows only the method)
 * after the route that served it, `POST /orders/:id/cancel`, and tags it with the correlation id, so
 * a trace is found by either. Tracing off: there is no recording span and this does nothing.
 */
import { trace } from '@opentelemetry/api';
import type { MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import type { AppEnv } from '../env.js';

export function traceRoute(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    await next();
    const span = trace.getActiveSpan();
    if (!span?.isRecording()) return;
    const route = routePath(c);
    span.updateName(`${c.req.method} ${route}`);
    span.setAttribute('http.route', route);
    span.setAttribute('acme.correlation_id', c.get('correlationId'));
  };
}
