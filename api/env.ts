/**
 * What the app is built from (`createApp(deps)`) and what each request carries. Everything with I/O
 * arrives here from `main.ts`, so tests build the same app over a test database and fakes.
 */
import type { Logger } from '../lib/logger.js';
import type { Config } from '../lib/config.js';
import type { Registry } from '../lib/metrics.js';
import type { Probe } from '../lib/probes.js';
import type { Pool } from '../db/pool.js';
import type { OrderWorkflows } from './order-workflows.js';
import type { Authenticator, Principal } from './auth.js';

export type { Probe } from '../lib/probes.js';

export interface AppDeps {
  pool: Pool;
  logger: Logger;
  workflows: OrderWorkflows;
  /** The Web UI link of each order's workflow; how long idempotency keys hold; the largest order total. */
  config: Pick<
    Config,
    'TEMPORAL_UI_URL' | 'TEMPORAL_NAMESPACE' | 'IDEMPOTENCY_KEY_RETENTION_HOURS' | 'EVENT_MAX_AMOUNT'
  >;
  /** `GET /ready` is 200 only when every probe resolves; e.g. `{ postgres, rabbitmq, temporal }`. */
  checks: Record<string, Probe>;
  /** Per-probe deadline for `GET /ready`. Default 2000. */
  readyTimeoutMs?: number;
  /**
   * The process's metrics, served at `GET /metrics`; the routes add theirs (`acme_orders_*`).
   * Default: a registry of the app's own metrics only.
   */
  registry?: Registry;
  /** Largest accepted request body. Default `LIMITS.maxBodyBytes`. */
  maxBodyBytes?: number;
  /** Verifies bearer tokens (api/auth.ts): the OIDC provider's JWKS or the local key pair. */
  authenticator: Authenticator;
  /** Writes (POST) per caller per window. Default: `RATE_LIMIT_WRITES` per `RATE_LIMIT_WINDOW_MS`. */
  rateLimit?: { writes: number; windowMs: number };
}

export interface AppEnv {
  Variables: {
    correlationId: string;
    /** The request's logger, bound to its correlation id. */
    log: Logger;
    /** Who is calling; set by `authenticate` on every route but the open ones. */
    principal: Principal;
    /** The order a `POST /orders` placed (or replayed), for the request's span (traceRoute). */
    orderId?: string;
  };
}
