/**
 * All saga activities, built over their dependencies. The worker calls `createActivities` with the
 * real pool, gateway and logger; workflow code imports only the types (`import type`).
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Logger } from '../lib/logger.js';
import { Registry, sagaMetrics, type SagaMetrics } from '../lib/metrics.js';
import { isDataError, type Pool } from '../db/pool.js';
import { createInventoryActivities } from './inventory.js';
import { createNotificationActivities } from './notification.js';
import { createOrderActivities } from './order.js';
import { createPaymentActivities } from './payment.js';
import type { PaymentGateway } from './payment-gateway.js';
import { FAILURE_TYPES } from './shared.js';

export interface ActivityDeps {
  pool: Pool;
  gateway: PaymentGateway;
  logger: Logger;
  /**
   * The worker's metrics registry: each attempt's duration and outcome, and the orders the steps end
   * (`acme_saga_step_duration_seconds`, `acme_orders_finished_total`). Default: one nobody scrapes.
   */
  registry?: Registry;
}

export function createActivities(deps: ActivityDeps) {
  const metrics = sagaMetrics(deps.registry ?? new Registry());
  const withMetrics = { ...deps, metrics };
  return withFailurePolicy(
    {
      ...createInventoryActivities(withMetrics),
      ...createPaymentActivities(withMetrics),
      ...createNotificationActivities(deps),
      ...createOrderActivities(withMetrics),
    },
    deps.logger,
    metrics,
  );
}

export type Activities = ReturnType<typeof createActivities>;

/**
 * One failure policy (and one timing) for every activity:
 * - each attempt's duration is observed with its outcome, `ok` or `failed`;
 * - PostgreSQL refusing the data itself (SQLSTATE class 22, e.g. a NUL byte in text) fails the step
 *   at once, loudly: retrying would fail the same way forever, holding the order (and its stock) in
 *   limbo;
 * - any other failure that Temporal will retry is logged with its attempt number, so a wait (an
 *   outage waited out by an unbounded retry policy) is visible in the logs, not silent.
 */
function withFailurePolicy<T extends Record<string, (...args: never[]) => Promise<unknown>>>(
  activities: T,
  logger: Logger,
  metrics: SagaMetrics,
): T {
  metrics.steps(Object.keys(activities));
  const wrapped = Object.entries(activities).map(([name, fn]) => [
    name,
    async (...args: never[]) => {
      const started = performance.now();
      const took = () => (performance.now() - started) / 1000;
      try {
        const result = await fn(...args);
        metrics.stepDone(name, 'ok', took());
        return result;
      } catch (err) {
        metrics.stepDone(name, 'failed', took());
        if (isDataError(err)) {
          logger.error({ activity: name, err }, 'the database refused the data; failing the step');
          throw ApplicationFailure.nonRetryable(
            `${name}: the database refused the data (SQLSTATE ${(err as { code: string }).code}): ${(err as Error).message}`,
            FAILURE_TYPES.DataError,
          );
        }
        if (!(err instanceof ApplicationFailure && err.nonRetryable)) {
          logger.warn(
            { activity: name, attempt: currentAttempt(), err: (err as Error)?.message ?? String(err) },
            'activity attempt failed; Temporal retries it with backoff',
          );
        }
        throw err;
      }
    },
  ]);
  return Object.fromEntries(wrapped) as T;
}

function currentAttempt(): number | undefined {
  try {
    return Context.current().info.attempt;
  } catch {
    return undefined;
  }
}

export type { StepArgs } from './shared.js';
export type { ReservationResult, ReleaseArgs, ReleaseResult } from './inventory.js';
export type { PaymentCapture, FailPaymentArgs, RefundArgs, RefundResult } from './payment.js';
export type { NotificationKind, NotifyArgs } from './notification.js';
export type { CancelOrderArgs } from './order.js';
export type { PaymentGateway } from './payment-gateway.js';
