/**
 * What the app is built from (`createApp(deps)`) and what each request carries. Everything with I/O
 * arrives here from `main.ts`, so tests build the same app over a test database and fakes.
 */
import type { Logger } from '../lib/logger.js';
import type { Config } from '../lib/config.js';
import type { Pool } from '../db/pool.js';
import type { OrderWorkflows } from './order-workflows.js';

/** A readiness probe: resolves when its dependency answers, rejects (or hangs) otherwise. */
export type Probe = (signal: AbortSignal) => Promise<void>;

export interface AppDeps {
  pool: Pool;
  logger: Logger;
  workflows: OrderWorkflows;
  /** For the Web UI link of each order's workflow. */
  config: Pick<Config, 'TEMPORAL_UI_URL' | 'TEMPORAL_NAMESPACE'>;
  /** `GET /ready` is 200 only when every probe resolves; e.g. `{ postgres, rabbitmq, temporal }`. */
  checks: Record<string, Probe>;
  /** Per-probe deadline for `GET /ready`. Default 2000. */
  readyTimeoutMs?: number;
  /** Largest accepted request body. Default `LIMITS.maxBodyBytes`. */
  maxBodyBytes?: number;
}

export interface AppEnv {
  Variables: {
    correlationId: string;
    /** The request's logger, bound to its correlation id. */
    log: Logger;
  };
}
