/**
 * The settlement workflow (workflows/settle-order.ts) on the time-skipping server, with the saga's
 * real compensations against a real PostgreSQL test database: it waits out an outage as the saga's
 * compensations do, gives back only what the run holds, and fails naming what could not be done.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { GatewayUnavailableError, type PaymentGateway } from '../../activities/payment-gateway.js';
import { SETTLE_WORKFLOW_TYPE } from '../../workflows/contract.js';
import * as workflows from '../../workflows/index.js';
import { createProduct } from '../helpers/db.js';
import { ledgerGateway } from './fixtures/gateways.js';
import { createSagaHarness, type SagaHarness } from './fixtures/harness.js';
import { createHeldOrder, outboxTypes, paymentStatus, stockOf } from './fixtures/orders.js';

let h: SagaHarness;
beforeAll(async () => {
  h = await createSagaHarness();
});
afterAll(async () => {
  await h?.close();
});

const settlementOf = (order: { orderId: string; correlationId: string }) => ({
  orderId: order.orderId,
  correlationId: order.correlationId,
  run: 1,
  reason: 'run terminated during the outage',
});

test('the bundle exports the settlement under the contract’s workflow type', () => {
  expect(Object.keys(workflows)).toContain(SETTLE_WORKFLOW_TYPE);
});

test('a capture is refunded once the gateway is back (the outage waited out), then the stock is released', async () => {
  const sku = await createProduct(h.db.pool, { stock: 3 });
  const order = await createHeldOrder(h.db.pool, { sku, status: 'PAYMENT_FAILED', payment: 'CAPTURED' });
  const ledger = ledgerGateway('up');
  let failures = 0;
  const gateway: PaymentGateway = {
    ...ledger,
    refund: async (request, signal) => {
      // Down for the first five attempts: minutes of backoff, skipped by the test server.
      if (failures++ < 5) throw new GatewayUnavailableError('simulated: gateway down');
      return ledger.refund(request, signal);
    },
  };
  const worker = await h.worker({ gateway });
  const result = await worker.runUntil(async () => {
    const handle = await h.settle(worker, settlementOf(order), {
      customerId: order.customerId,
      status: 'PAYMENT_FAILED',
    });
    return handle.result();
  });
  expect(result).toEqual({
    orderId: order.orderId,
    run: 1,
    money: 'refunded',
    stockReleased: true,
    skipped: [],
  });
  expect(failures).toBe(6);
  expect(await paymentStatus(h.db.pool, order.orderId)).toBe('REFUNDED');
  expect(await stockOf(h.db.pool, sku)).toBe(3);
  expect(await outboxTypes(h.db.pool, order.orderId)).toEqual(['payment.refunded', 'inventory.released']);
});

test('a compensation that cannot succeed fails the settlement naming it; the other still runs', async () => {
  const sku = await createProduct(h.db.pool, { stock: 2 });
  const order = await createHeldOrder(h.db.pool, { sku, status: 'CANCELLED', payment: 'CAPTURED' });
  const worker = await h.worker({
    activityOverrides: {
      refundPayment: async () => {
        throw ApplicationFailure.nonRetryable('the gateway refuses refunds for this merchant', 'Refused');
      },
    },
  });
  const failure = await worker.runUntil(async () => {
    const handle = await h.settle(worker, settlementOf(order), {
      customerId: order.customerId,
      status: 'CANCELLED',
    });
    return handle.result().catch((err: unknown) => err);
  });
  expect(failure).toBeInstanceOf(WorkflowFailedError);
  const cause = (failure as WorkflowFailedError).cause as ApplicationFailure;
  expect(cause.type).toBe('CompensationFailed');
  expect(cause.message).toMatch(/refundPayment: the gateway refuses refunds for this merchant/);
  expect(cause.message).toContain(`orders settle ${order.orderId}`);
  expect(await paymentStatus(h.db.pool, order.orderId)).toBe('CAPTURED');
  // The stock's release still ran, as in the saga (every compensation runs): the order is not sold.
  expect(await stockOf(h.db.pool, sku)).toBe(2);
});
