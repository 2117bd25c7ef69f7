/**
 * The saga's activities against a real PostgreSQL test database, called directly the way Temporal
 * retries them: the same arguments (same order and run) twice. A retry must change no second row,
 * write no second event, and return the same result.
 */
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { createActivities, type Activities } from '../../activities/index.js';
import {
  PaymentDeclinedError,
  createSimulatedGateway,
  type PaymentGateway,
} from '../../activities/payment-gateway.js';
import { createProduct, createTestDatabase, type TestDatabase } from '../helpers/db.js';
import {
  createOrder,
  notificationKinds,
  orderStatus,
  outboxTypes,
  paymentStatus,
  stockOf,
  type TestOrder,
} from '../workflow/fixtures/orders.js';
import { recordCancelReason, recordCancelRequest } from '../../db/orders.js';
import { cancelWording } from '../../domain/cancel.js';
import { RETRY_STATUS_REASON, RUN_STOPPED_REASON, WAITING_FOR_PAYMENT_REASON } from '../../domain/order.js';
import { getOrder } from '../../db/order-views.js';

let db: TestDatabase;
let acts: Activities;
const calls = { charge: 0, void: 0, refund: 0 };

beforeAll(async () => {
  db = await createTestDatabase();
  const simulated = createSimulatedGateway(loadConfig());
  // The simulated gateway, counting calls, so a test can see a retry never reaches it twice.
  const gateway: PaymentGateway = {
    charge: (request) => {
      calls.charge += 1;
      return simulated.charge(request);
    },
    void: (request) => {
      calls.void += 1;
      return simulated.void(request);
    },
    refund: (request) => {
      calls.refund += 1;
      return simulated.refund(request);
    },
  };
  acts = createActivities({ pool: db.pool, gateway, logger: createLogger('activities-test', 'silent') });
});
afterAll(async () => {
  await db?.drop();
});

const step = (order: TestOrder, run = 1) => ({
  orderId: order.orderId,
  correlationId: order.correlationId,
  run,
});

async function reservedOrder(qty = 2, stock = 5) {
  const sku = await createProduct(db.pool, { stock });
  const order = await createOrder(db.pool, { items: [{ sku, qty }] });
  const reserved = await acts.reserveInventory(step(order));
  expect(reserved.outcome).toBe('RESERVED');
  return { sku, order };
}

describe('reserveInventory', () => {
  test('does not wait for an order being placed for the same product (its foreign-key lock)', async () => {
    const sku = await createProduct(db.pool, { stock: 5 });
    const placing = await createOrder(db.pool, { items: [] });
    const reserving = await createOrder(db.pool, { items: [{ sku, qty: 1 }] });
    const api = await db.pool.connect();
    try {
      // The API, mid-transaction: its order line holds `for key share` on the product.
      await api.query('begin');
      await api.query(
        `insert into order_items (order_id, sku, qty, unit_price) values ($1::uuid, $2, 1, 10)`,
        [placing.orderId, sku],
      );
      const reserved = await Promise.race([
        acts.reserveInventory(step(reserving)),
        new Promise((resolve) => setTimeout(() => resolve('blocked behind the order being placed'), 3000)),
      ]);
      expect(reserved).toMatchObject({ outcome: 'RESERVED' });
    } finally {
      await api.query('rollback');
      api.release();
    }
  });

  test('a retried reservation decrements stock once, writes one event and returns the same result', async () => {
    const a = await createProduct(db.pool, { stock: 5 });
    const b = await createProduct(db.pool, { stock: 5 });
    const order = await createOrder(db.pool, {
      items: [
        { sku: b, qty: 1 },
        { sku: a, qty: 2 },
      ],
    });
    const args = step(order);

    const first = await acts.reserveInventory(args);
    const retry = await acts.reserveInventory(args);

    expect(retry).toEqual(first);
    expect(first).toEqual({
      outcome: 'RESERVED',
      items: [
        { sku: a, qty: 2 },
        { sku: b, qty: 1 },
      ].sort((x, y) => x.sku.localeCompare(y.sku)),
    });
    expect(await stockOf(db.pool, a)).toBe(3);
    expect(await stockOf(db.pool, b)).toBe(4);
    expect(await orderStatus(db.pool, order.orderId)).toBe('RESERVED');
    expect(await outboxTypes(db.pool, order.orderId)).toEqual(['inventory.reserved']);
  });

  test('out of stock: nothing reserved, one event, the same answer on retry', async () => {
    const sku = await createProduct(db.pool, { stock: 1 });
    const order = await createOrder(db.pool, { items: [{ sku, qty: 2 }] });
    const args = step(order);

    const first = await acts.reserveInventory(args);
    expect(first).toEqual({ outcome: 'OUT_OF_STOCK', unavailable: [{ sku, requested: 2, available: 1 }] });
    expect(await acts.reserveInventory(args)).toEqual(first);
    expect(await stockOf(db.pool, sku)).toBe(1);
    expect(await outboxTypes(db.pool, order.orderId)).toEqual(['order.out_of_stock']);
  });

  test('an order the API already cancelled is left alone', async () => {
    const sku = await createProduct(db.pool, { stock: 3 });
    const order = await createOrder(db.pool, { items: [{ sku, qty: 1 }], status: 'CANCELLED' });
    expect(await acts.reserveInventory(step(order))).toEqual({ outcome: 'CANCELLED' });
    expect(await stockOf(db.pool, sku)).toBe(3);
    expect(await outboxTypes(db.pool, order.orderId)).toEqual([]);
  });

  test('concurrent orders on the same products neither oversell nor deadlock', async () => {
    const a = await createProduct(db.pool, { stock: 10 });
    const b = await createProduct(db.pool, { stock: 10 });
    // Items listed in opposite orders: without the fixed lock order these would deadlock.
    const orders = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        createOrder(db.pool, {
          items:
            i % 2 === 0
              ? [
                  { sku: a, qty: 3 },
                  { sku: b, qty: 1 },
                ]
              : [
                  { sku: b, qty: 3 },
                  { sku: a, qty: 1 },
                ],
        }),
      ),
    );
    const results = await Promise.all(orders.map((order) => acts.reserveInventory(step(order))));
    const reserved = results.filter((r) => r.outcome === 'RESERVED').length;
    expect(reserved).toBeGreaterThan(0);
    expect(reserved + results.filter((r) => r.outcome === 'OUT_OF_STOCK').length).toBe(8);
    // Every reserved order took 4 units in total; stock never went negative (CHECK) and adds up.
    expect((await stockOf(db.pool, a)) + (await stockOf(db.pool, b))).toBe(20 - 4 * reserved);
  });
});

describe('releaseInventory', () => {
  test('gives the stock back once, however often it is retried or re-issued', async () => {
    const { sku, order } = await reservedOrder(2, 5);
    const args = { ...step(order), reason: 'payment declined' };

    const first = await acts.releaseInventory(args);
    expect(first).toEqual({ released: true, items: [{ sku, qty: 2 }] });
    expect(await acts.releaseInventory(args)).toEqual(first); // retry: same answer
    // Another run of the order (a stray) finds nothing of its own to give back.
    expect(await acts.releaseInventory({ ...step(order, 2), reason: 'again' })).toMatchObject({
      released: false,
      items: [],
    });

    expect(await stockOf(db.pool, sku)).toBe(5);
    expect(await outboxTypes(db.pool, order.orderId)).toEqual(['inventory.reserved', 'inventory.released']);
  });

  test('releases nothing when nothing was reserved', async () => {
    const sku = await createProduct(db.pool, { stock: 5 });
    const order = await createOrder(db.pool, { items: [{ sku, qty: 2 }] });
    expect(await acts.releaseInventory({ ...step(order), reason: 'cancelled' })).toMatchObject({
      released: false,
      items: [],
    });
    expect(await stockOf(db.pool, sku)).toBe(5);
    expect(await outboxTypes(db.pool, order.orderId)).toEqual([]);
  });
});

describe('payments', () => {
  test('a retried charge takes the money once and records one capture and one event', async () => {
    const { order } = await reservedOrder();
    const args = step(order);
    const before = calls.charge;

    const first = await acts.chargePayment(args);
    const retry = await acts.chargePayment(args);

    expect(retry).toEqual(first);
    expect(first).toEqual({ reference: `sim_ch_${order.orderId}`, amount: order.total, currency: 'USD' });
    expect(calls.charge - before).toBe(1);
    expect(await paymentStatus(db.pool, order.orderId)).toBe('CAPTURED');
    expect(await orderStatus(db.pool, order.orderId)).toBe('PAID');
    expect(await outboxTypes(db.pool, order.orderId)).toEqual(['inventory.reserved', 'payment.completed']);
  });

  test('a decline is a non-retryable PaymentDeclined failure, recorded, with the order untouched', async () => {
    const sku = await createProduct(db.pool, { stock: 5 });
    const order = await createOrder(db.pool, { items: [{ sku, qty: 1 }], customerId: 'DECLINE-C1' });
    await acts.reserveInventory(step(order));

    const err = await acts.chargePayment(step(order)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err).toMatchObject({ type: 'PaymentDeclined', nonRetryable: true });
    expect(await paymentStatus(db.pool, order.orderId)).toBe('DECLINED');
    expect(await orderStatus(db.pool, order.orderId)).toBe('RESERVED');
  });

  test("a decline whose answer was lost is declined again on the next attempt, as the gateway's answer", async () => {
    // The first attempt's decline is recorded, then its answer is lost (the worker restarts, or the
    // attempt times out just after): the saga retries the charge. It must hear the same decline, not
    // a step failure that leaves the order RESERVED for an automatic retry to charge again.
    const sku = await createProduct(db.pool, { stock: 5 });
    const order = await createOrder(db.pool, { items: [{ sku, qty: 1 }], customerId: 'DECLINE-C1' });
    await acts.reserveInventory(step(order));
    const first = await acts.chargePayment(step(order)).catch((e: unknown) => e);
    const before = calls.charge;

    const again = await acts.chargePayment(step(order)).catch((e: unknown) => e);

    expect(again).toMatchObject({ type: 'PaymentDeclined', nonRetryable: true });
    const { message, details } = first as ApplicationFailure;
    expect(again).toMatchObject({ message, details });
    expect(calls.charge - before).toBe(0);
    expect(await paymentStatus(db.pool, order.orderId)).toBe('DECLINED');
    expect(await orderStatus(db.pool, order.orderId)).toBe('RESERVED');
  });

  test("a decline answered again keeps the gateway's own code and words, whatever their form", async () => {
    const { order } = await reservedOrder();
    const gateway: PaymentGateway = {
      charge: async () => {
        throw new PaymentDeclinedError('do not honour: limit: exceeded', 'card_declined.51');
      },
      void: async () => ({ outcome: 'voided' }),
      refund: async () => undefined,
    };
    const declining = createActivities({
      pool: db.pool,
      logger: createLogger('activities-test', 'silent'),
      gateway,
    });
    const first = (await declining.chargePayment(step(order)).catch((e: unknown) => e)) as ApplicationFailure;
    const again = await declining.chargePayment(step(order)).catch((e: unknown) => e);
    expect(first).toMatchObject({ type: 'PaymentDeclined', details: [{ code: 'card_declined.51' }] });
    expect(again).toMatchObject({ type: 'PaymentDeclined', message: first.message, details: first.details });
  });

  test('a gateway outage is a retryable GatewayUnavailable failure', async () => {
    const { order } = await reservedOrder();
    const down = createActivities({
      pool: db.pool,
      logger: createLogger('activities-test', 'silent'),
      gateway: createSimulatedGateway({ ...loadConfig(), PAYMENT_TRANSIENT_FAILURE_RATE: 1 }),
    });
    const err = await down.chargePayment(step(order)).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'GatewayUnavailable', nonRetryable: false });
    expect(await orderStatus(db.pool, order.orderId)).toBe('RESERVED');
    // Its customer reads why the order waits (GET /orders/:id), until its next status says otherwise.
    expect((await getOrder(db.pool, order.orderId))?.statusReason).toBe(WAITING_FOR_PAYMENT_REASON);
    await acts.chargePayment(step(order));
    expect(await getOrder(db.pool, order.orderId)).toMatchObject({ status: 'PAID', statusReason: null });
    // A run that gives back instead no longer says it retries: a failed run says it stopped, a
    // cancelled one says nothing until the cancel's own words.
    const { order: failed } = await reservedOrder();
    await down.chargePayment(step(failed)).catch(() => undefined);
    await acts.refundPayment({ ...step(failed), reason: 'the charge step failed' });
    expect(await getOrder(db.pool, failed.orderId)).toMatchObject({
      status: 'RESERVED',
      statusReason: RUN_STOPPED_REASON,
    });
    const { order: cancelled } = await reservedOrder();
    await down.chargePayment(step(cancelled)).catch(() => undefined);
    await acts.refundPayment({ ...step(cancelled), reason: 'cancelled', cancelled: true });
    expect(await getOrder(db.pool, cancelled.orderId)).toMatchObject({
      status: 'RESERVED',
      statusReason: null,
    });
    // Nor while a cancel asked for it is being finished (a settlement gives back as the cancel's).
    const { order: asked } = await reservedOrder();
    await recordCancelRequest(db.pool, asked.orderId);
    await acts.refundPayment({ ...step(asked), reason: 'settlement' });
    expect((await getOrder(db.pool, asked.orderId))?.statusReason).toBeNull();
    // A retried run that stops replaces "running again", which would no longer be true.
    const { order: retried } = await reservedOrder();
    await db.pool.query('update orders set status_reason = $2 where id = $1', [
      retried.orderId,
      RETRY_STATUS_REASON,
    ]);
    await acts.refundPayment({ ...step(retried), reason: 'the step failed' });
    expect((await getOrder(db.pool, retried.orderId))?.statusReason).toBe(RUN_STOPPED_REASON);
  });

  test('a retried failPayment records one DECLINED payment and one payment.failed', async () => {
    const { order } = await reservedOrder();
    const args = {
      ...step(order),
      code: 'DEADLINE_EXCEEDED' as const,
      reason: 'payment not captured in time',
    };

    expect(await acts.failPayment(args)).toEqual({ status: 'PAYMENT_FAILED' });
    expect(await acts.failPayment(args)).toEqual({ status: 'PAYMENT_FAILED' });
    expect(await paymentStatus(db.pool, order.orderId)).toBe('DECLINED');
    expect(await outboxTypes(db.pool, order.orderId)).toEqual(['inventory.reserved', 'payment.failed']);
  });

  test("the deadline's failPayment refuses a cancel recorded before the deadline was decided (the saga cancels instead); not one recorded after, nor for a decline", async () => {
    const decidedBefore = Date.now() - 60_000; // the cancel is recorded after this
    const { order } = await reservedOrder();
    await recordCancelRequest(db.pool, order.orderId);
    await recordCancelReason(db.pool, order.orderId, {
      code: 'changed_mind',
      note: undefined,
      confirmed: false,
    });
    const late = {
      ...step(order),
      code: 'DEADLINE_EXCEEDED' as const,
      reason: 'payment not captured in time',
    };

    const refused = await acts
      .failPayment({ ...late, deadlineDecidedAt: Date.now() + 1_000 })
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({
      type: 'CancelRequested',
      nonRetryable: true,
      details: [{ wording: cancelWording('changed_mind') }],
    });
    expect(await orderStatus(db.pool, order.orderId)).toBe('RESERVED');
    expect(await outboxTypes(db.pool, order.orderId)).toEqual(['inventory.reserved']);

    // Recorded after the deadline was decided: the saga refused that cancel as too late, and the
    // payment fails as it told the caller. Nor does a saga that says nothing of when (older code).
    for (const args of [{ ...late, deadlineDecidedAt: decidedBefore }, late]) {
      const { order: other } = await reservedOrder();
      await recordCancelRequest(db.pool, other.orderId);
      expect(await acts.failPayment({ ...args, orderId: other.orderId })).toEqual({
        status: 'PAYMENT_FAILED',
      });
    }
    // The gateway's own no is final: the order ends PAYMENT_FAILED (the cancel is kept on it).
    const declined = {
      ...late,
      code: 'DECLINED' as const,
      reason: 'card declined',
      deadlineDecidedAt: Date.now(),
    };
    expect(await acts.failPayment(declined)).toEqual({ status: 'PAYMENT_FAILED' });
  });

  test('a retried refund refunds once; no capture means nothing to refund', async () => {
    const { order } = await reservedOrder();
    await acts.chargePayment(step(order));
    const before = calls.refund;
    const args = { ...step(order), reason: 'cancelled' };

    expect(await acts.refundPayment(args)).toEqual({ refunded: true });
    expect(await acts.refundPayment(args)).toEqual({ refunded: true });
    expect(calls.refund - before).toBe(1);
    expect(await paymentStatus(db.pool, order.orderId)).toBe('REFUNDED');
    // Published like every state change, once: the retry derived the same event id.
    expect(await outboxTypes(db.pool, order.orderId)).toEqual([
      'inventory.reserved',
      'payment.completed',
      'payment.refunded',
    ]);

    const { order: unpaid } = await reservedOrder();
    expect(await acts.refundPayment({ ...args, orderId: unpaid.orderId })).toEqual({ refunded: false });
  });
});

describe('order steps and notifications', () => {
  test('notify, complete and cancel are idempotent', async () => {
    const { order } = await reservedOrder();
    await acts.chargePayment(step(order));
    const notify = {
      orderId: order.orderId,
      correlationId: order.correlationId,
      kind: 'order-completed' as const,
    };
    expect(await acts.notifyCustomer(notify)).toEqual({ kind: 'order-completed', sent: true });
    expect(await acts.notifyCustomer(notify)).toEqual({ kind: 'order-completed', sent: false });
    const complete = step(order);
    expect(await acts.completeOrder(complete)).toEqual({ status: 'COMPLETED' });
    expect(await acts.completeOrder(complete)).toEqual({ status: 'COMPLETED' });

    expect(await notificationKinds(db.pool, order.orderId)).toEqual(['order-completed']);
    expect(await outboxTypes(db.pool, order.orderId)).toEqual([
      'inventory.reserved',
      'payment.completed',
      'order.completed',
    ]);

    const { order: other } = await reservedOrder();
    const cancel = { ...step(other), reason: 'changed my mind' };
    expect(await acts.cancelOrder(cancel)).toEqual({ status: 'CANCELLED' });
    expect(await acts.cancelOrder(cancel)).toEqual({ status: 'CANCELLED' });
    expect(await outboxTypes(db.pool, other.orderId)).toEqual(['inventory.reserved', 'order.cancelled']);
  });

  test('cancel after a capture that raced it: allowed only once the capture is refunded', async () => {
    const { order } = await reservedOrder();
    await acts.chargePayment(step(order));
    const cancel = { ...step(order), reason: 'cancelled while charging' };

    await expect(acts.cancelOrder(cancel)).rejects.toMatchObject({ type: 'InvalidOrderStatus' });
    await acts.refundPayment({ ...step(order), reason: 'cancelled' });
    expect(await acts.cancelOrder(cancel)).toEqual({ status: 'CANCELLED' });
    expect(await orderStatus(db.pool, order.orderId)).toBe('CANCELLED');
  });

  test('completing an order that was never paid is refused, not retried', async () => {
    const { order } = await reservedOrder();
    await expect(acts.completeOrder(step(order))).rejects.toMatchObject({
      type: 'InvalidOrderStatus',
      nonRetryable: true,
    });
  });
});
