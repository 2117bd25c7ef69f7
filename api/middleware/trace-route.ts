/**
 * Names the request's server span (started by the http instrumentation, which knows only the method)
 * after the route that served it, `POST /orders/:id/cancel`, and tags it with the correlation id
 * and the order's id, so a trace is found by any of them. Tracing off: there is no recording span
 * and this does nothing.
 */
import { trace } from '@opentelemetry/api';
import type { MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import type { AppEnv } from '../env.js';
import { ORDER_ID } from '../../domain/order.js';

const ORDER_PATH = /^\/orders\/([^/]+)/;

export function traceRoute(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    await next();
    const span = trace.getActiveSpan();
    if (!span?.isRecording()) return;
    const route = routePath(c);
    span.updateName(`${c.req.method} ${route}`);
    span.setAttribute('http.route', route);
    span.setAttribute('acme.correlation_id', c.get('correlationId'));
    // An order's own routes (read, cancel, retry), or the order a POST /orders made: a search by
    // acme.order_id then finds every request about the order, not only the one that placed it.
    // From the path, not the route's params: a request refused before its route ran (401, 429) has none.
    const orderId = ORDER_PATH.exec(c.req.path)?.[1] ?? c.get('orderId');
    if (orderId !== undefined && ORDER_ID.test(orderId))
      span.setAttribute('acme.order_id', orderId.toLowerCase());
  };
}
