import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env.js';

export interface RequestLoggerOptions {
  /** Paths logged at `debug` instead of `info` (probes would drown everything else). */
  quietPaths?: ReadonlySet<string>;
}

/**
 * One log line per request: method, path, status, duration in ms, through the request's logger
 * (so it carries the correlation id). Needs `correlationId()` in front of it.
 *
 * @example
 * app.use(correlationId({ logger }), requestLogger({ quietPaths: new Set(['/health']) }));
 */
export function requestLogger({
  quietPaths = new Set(),
}: RequestLoggerOptions = {}): MiddlewareHandler<AppEnv> {
  return async function requestLoggerMiddleware(c, next) {
    const started = performance.now();
    await next();
    const status = c.res.status;
    const fields = {
      method: c.req.method,
      path: c.req.path,
      status,
      ms: Math.round((performance.now() - started) * 10) / 10,
    };
    if (status >= 500) c.var.log.error(fields, 'request failed');
    else if (quietPaths.has(c.req.path)) c.var.log.debug(fields, 'request');
    else c.var.log.info(fields, 'request');
  };
}
