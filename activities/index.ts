/**
 * All saga activities, built over their dependencies. The worker calls `createActivities` with the
 * real pool, gateway and logger; workflow code imports only the types (`import type`).
 */
import type { Logger } from '../lib/logger.js';
import type { Pool } from '../db/pool.js';
import { createInventoryActivities } from './inventory.js';
import { createNotificationActivities } from './notification.js';
import { createOrderActivities } from './order.js';
import { createPaymentActivities } from './payment.js';
import type { PaymentGateway } from './payment-gateway.js';

export interface ActivityDeps {
  pool: Pool;
  gateway: PaymentGateway;
  logger: Logger;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createInventoryActivities(deps),
    ...createPaymentActivities(deps),
    ...createNotificationActivities(deps),
    ...createOrderActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;

export type { StepArgs } from './shared.js';
export type { ReservationResult, ReleaseArgs, ReleaseResult } from './inventory.js';
export type { PaymentCapture, FailPaymentArgs, RefundArgs, RefundResult } from './payment.js';
export type { NotificationKind, NotifyArgs } from './notification.js';
export type { CancelOrderArgs } from './order.js';
export type { PaymentGateway } from './payment-gateway.js';
