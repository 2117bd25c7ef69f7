/**
 * All saga activities, built over their dependencies. The worker calls `createActivities` with the
 * real pool, gateway and logger; workflow code imports only the types (`import type`).
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Logger } from '../lib/logger.js';
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
}

export function createActivities(deps: ActivityDeps) {
  return withFailurePolicy(
    {
      ...createInventoryActivities(deps),
      ...createPaymentActivities(deps),
      ...createNotificationActivities(deps),
      ...createOrderActivities(deps),
    },
    deps.logger,
  );
}

export type Activities = ReturnType<typeof createActivities>;

/**
 * One failure policy for every activity:
 * - PostgreSQL refusing the data itself (SQLSTATE class 22, e.g. a NUL byte in text) fails the step
 *   at once, loudly: retrying would fail the same way forever, holding the order (and its stock) in
 *   limbo;
 * - any other failure that Temporal will retry is logged with its attempt number, so a wait (an
 *   outage waited out by an unbounded retry policy) is visible in the logs, not silent.
 */
function withFailurePolicy<T extends Record<string, (...args: never[]) => Promise<unknown>>>(
  activities: T,
  logger: Logger,
): T {
  const wrapped = Object.entries(activities).map(([name, fn]) => [
    name,
    async (...args: never[]) => {
      try {
        return await fn(...args);
      } catch (err) {
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
