/**
 * The saga's activities against a real PostgreSQL test database, called directly the way Temporal
 * retries them: the same arguments (same deterministic event id) twice. A retry must change no
 * second row, write no second event, and return the same result.
 */
import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { createActivities, type Activities } from '../../activities/index.js';
import { createSimulatedGateway, type PaymentGateway } from '../../activities/payment-gateway.js';
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

let db: TestDatabase;
let acts: Activities;
const calls = { charge: 0, refund: 0 };

beforeAll(async () => {
  db = await createTestDatabase();
  const simulated = createSimulatedGateway(loadConfig());
  // The simulated gateway, counting calls, so a test can see a retry never reaches it twice.
  const gateway: PaymentGateway = {
    charge: (request) => {
      calls.charge += 1;
      return simulated.charge(request);
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

const step = (order: TestOrder) => ({
  orderId: order.orderId,
  correlationId: order.correlationId,
  eventId: randomUUID(),
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
    // A second compensation with another event id (another run) finds it released already.
    expect(await acts.releaseInventory({ ...step(order), reason: 'again' })).toEqual({
      released: false,
      items: [],
    });

    expect(await stockOf(db.pool, sku)).toBe(5);
    expect(await outboxTypes(db.pool, order.orderId)).toEqual(['inventory.reserved', 'inventory.released']);
  });

  test('releases nothing when nothing was reserved', async () => {
    const sku = await createProduct(db.pool, { stock: 5 });
    const order = await createOrder(db.pool, { items: [{ sku, qty: 2 }] });
    expect(await acts.releaseInventory({ ...step(order), reason: 'cancelled' })).toEqual({
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

  test('a retried refund refunds once; no capture means nothing to refund', async () => {
    const { order } = await reservedOrder();
    await acts.chargePayment(step(order));
    const before = calls.refund;
    const args = { orderId: order.orderId, correlationId: order.correlationId, reason: 'cancelled' };

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

describe('a charge whose outcome was lost', () => {
  /** Takes the money, then the answer is lost on the way back (a timeout, a dropped connection). */
  function lostResponseGateway() {
    const captured = new Set<string>();
    const voided: string[] = [];
    const gateway: PaymentGateway = {
      async charge(request) {
        captured.add(request.idempotencyKey);
        throw new Error('simulated: socket hang up (the response was lost after the capture)');
      },
      async refund(request) {
        if (captured.delete(request.chargeKey)) voided.push(request.chargeKey);
      },
    };
    return { gateway, captured, voided };
  }

  test('deadline, then compensation: the unknown charge is voided at the gateway by its key', async () => {
    const { gateway, captured, voided } = lostResponseGateway();
    const lossy = createActivities({
      pool: db.pool,
      gateway,
      logger: createLogger('activities-test', 'silent'),
    });
    const { order } = await reservedOrder();
    await expect(lossy.chargePayment(step(order))).rejects.toThrow(/socket hang up/);
    expect(await paymentStatus(db.pool, order.orderId)).toBe('CHARGING');

    const ids = { orderId: order.orderId, correlationId: order.correlationId };
    const reason = 'payment not captured in time';
    await lossy.failPayment({ ...step(order), code: 'DEADLINE_EXCEEDED', reason });
    expect(await paymentStatus(db.pool, order.orderId)).toBe('CHARGING'); // outcome still unknown
    expect(await lossy.refundPayment({ ...ids, reason })).toEqual({ refunded: false, voided: true });
    expect(await lossy.refundPayment({ ...ids, reason })).toEqual({ refunded: false, voided: true }); // retry
    expect(voided).toEqual([order.orderId]);
    expect(captured.size).toBe(0); // the customer keeps their money
    expect(await paymentStatus(db.pool, order.orderId)).toBe('VOIDED');
  });

  test('a capture that lands after the payment was settled is refunded at once', async () => {
    const { order } = await reservedOrder();
    const ids = { orderId: order.orderId, correlationId: order.correlationId };
    await acts.failPayment({ ...step(order), code: 'DEADLINE_EXCEEDED', reason: 'deadline' });
    await acts.refundPayment({ ...ids, reason: 'deadline' }); // nothing charged yet: nothing to do
    const before = calls.refund;
    // The payment is settled (DECLINED); a zombie attempt of the cancelled activity still runs:
    await expect(acts.chargePayment(step(order))).rejects.toMatchObject({ type: 'InvalidOrderStatus' });
    expect(calls.refund - before).toBe(0); // the order was not RESERVED: it never reached the gateway
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
    expect(await acts.notifyCustomer(notify)).toEqual({ kind: 'order-completed' });
    expect(await acts.notifyCustomer(notify)).toEqual({ kind: 'order-completed' });
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
    await acts.refundPayment({
      orderId: order.orderId,
      correlationId: order.correlationId,
      reason: 'cancelled',
    });
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
