import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import type { Logger } from '../../lib/logger.js';
import type { AppEnv } from '../env.js';

export interface CorrelationOptions {
  /** The root logger; each request gets a child bound to its correlation id. */
  logger: Logger;
  /** Request and response header. Default `X-Correlation-Id`. */
  header?: string;
}

/** Accepted from clients: ids and UUIDs, nothing that could smuggle text into logs or headers. */
const VALID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/**
 * Gives every request a correlation id: the caller's `X-Correlation-Id` when it is a plain token of
 * at most 128 characters, else a fresh UUID. It is stored as `c.var.correlationId`, bound to
 * `c.var.log`, and echoed in the response header, including on errors.
 *
 * @example
 * app.use(correlationId({ logger }));
 * app.get('/x', (c) => c.json({ correlationId: c.var.correlationId }));
 */
export function correlationId({
  logger,
  header = 'X-Correlation-Id',
}: CorrelationOptions): MiddlewareHandler<AppEnv> {
  return async function correlationIdMiddleware(c, next) {
    const offered = c.req.header(header);
    const id = offered !== undefined && VALID.test(offered) ? offered : randomUUID();
    c.set('correlationId', id);
    c.set('log', logger.child({ correlationId: id }));
    c.header(header, id);
    await next();
    // Responses built outside `c` (static files, onError) do not carry headers set above.
    if (!c.res.headers.has(header)) c.res.headers.set(header, id);
  };
}
