/**
 * Issue: every effect safe against a run that should not be doing it. The saga's activities against
 * a real PostgreSQL, called the way a stray run, a reset, a retried order or a zombie attempt would
 * call them, with a fake gateway that keeps real gateways' promises (first answer replayed per key,
 * voids final): stock and money must come out right under each interleaving.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createActivities, type Activities } from '../../activities/index.js';
import { GatewayUnavailableError } from '../../activities/payment-gateway.js';
import { retryOrder } from '../../db/order-retries.js';
import { chargeKey, voidKey } from '../../domain/payment.js';
import { cancelOrderWithoutSaga, recordCancelRequest } from '../../db/orders.js';
import { createLogger } from '../../lib/logger.js';
import { waitFor } from '../helpers/amqp.js';
import { createProduct, createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { ledgerGateway, type LedgerGateway } from '../workflow/fixtures/gateways.js';
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
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

function activitiesWith(gateway: LedgerGateway): Activities {
  return createActivities({ pool: db.pool, gateway, logger: createLogger('safety-test', 'silent') });
}

const step = (order: TestOrder, run = 1) => ({
  orderId: order.orderId,
  correlationId: order.correlationId,
  run,
});

async function reserved(
  acts: Activities,
  { qty = 2, stock = 5, customerId }: { qty?: number; stock?: number; customerId?: string } = {},
) {
  const sku = await createProduct(db.pool, { stock });
  const order = await createOrder(db.pool, { items: [{ sku, qty }], ...(customerId ? { customerId } : {}) });
  expect(await acts.reserveInventory(step(order))).toMatchObject({ outcome: 'RESERVED' });
  return { sku, order };
}

/**
 * A point where a test holds a call in flight: the call awaits `hold()`, the test awaits `reached`
 * (the call got there), does what it must meanwhile, then `open()`s it.
 */
function holdPoint() {
  let arrive!: () => void;
  let open!: () => void;
  const reached = new Promise<void>((resolve) => (arrive = resolve));
  const opened = new Promise<void>((resolve) => (open = resolve));
  return {
    reached,
    open,
    hold: () => {
      arrive();
      return opened;
    },
  };
}

/** Everything a stray run could disturb, to compare before and after. */
async function snapshot(order: TestOrder, sku: string) {
  return {
    stock: await stockOf(db.pool, sku),
    status: await orderStatus(db.pool, order.orderId),
    payment: await paymentStatus(db.pool, order.orderId),
    events: await outboxTypes(db.pool, order.orderId),
    notifications: await notificationKinds(db.pool, order.orderId),
  };
}

/** An operator's retry, as far as the activities can tell: the order moved on to another run. */
async function moveToRun(order: TestOrder, run: number): Promise<void> {
  await db.pool.query('update orders set run = $2 where id = $1::uuid', [order.orderId, run]);
}

describe('a run that is not the order’s own changes nothing', () => {
  test('the compensations of a second run of a COMPLETED order give back neither stock nor money', async () => {
    const gateway = ledgerGateway();
    const acts = activitiesWith(gateway);
    const { sku, order } = await reserved(acts);
    await acts.chargePayment(step(order));
    await acts.notifyCustomer({ ...step(order), kind: 'order-completed' });
    await acts.completeOrder(step(order));
    const before = await snapshot(order, sku);
    expect(before).toMatchObject({ stock: 3, status: 'COMPLETED', payment: 'CAPTURED' });

    // A second run (a reset to the first workflow task, a start after retention, a replayed
    // order.placed): its forward steps answer from the record, its compensations find nothing.
    expect(await acts.reserveInventory(step(order))).toMatchObject({ outcome: 'RESERVED' });
    expect(await acts.releaseInventory({ ...step(order), reason: 'stray' })).toMatchObject({
      released: false,
    });
    expect(await acts.refundPayment({ ...step(order), reason: 'stray' })).toMatchObject({ refunded: false });
    expect(await acts.chargePayment(step(order))).toMatchObject({ reference: `ledger_${order.orderId}` });
    await acts.completeOrder(step(order));

    expect(await snapshot(order, sku)).toEqual(before);
    expect(gateway.captures).toBe(1);
    expect(gateway.held.size).toBe(1); // the customer paid once, for the order they got
    expect(gateway.calls.refund).toEqual([]);
  });

  test('a stale run (the order was retried since) may not reserve, charge, fail, complete or cancel', async () => {
    const acts = activitiesWith(ledgerGateway());
    const sku = await createProduct(db.pool, { stock: 5 });
    const order = await createOrder(db.pool, { items: [{ sku, qty: 1 }] });
    await moveToRun(order, 2);
    const before = await snapshot(order, sku);

    const stale = step(order, 1);
    await expect(acts.reserveInventory(stale)).rejects.toMatchObject({
      type: 'StaleRun',
      nonRetryable: true,
    });
    await expect(acts.chargePayment(stale)).rejects.toMatchObject({ type: 'StaleRun' });
    await expect(acts.failPayment({ ...stale, code: 'DECLINED', reason: 'x' })).rejects.toMatchObject({
      type: 'StaleRun',
    });
    await expect(acts.completeOrder(stale)).rejects.toMatchObject({ type: 'StaleRun' });
    await expect(acts.cancelOrder({ ...stale, reason: 'x' })).rejects.toMatchObject({ type: 'StaleRun' });
    expect(await acts.notifyCustomer({ ...stale, kind: 'order-cancelled' })).toMatchObject({ sent: false });
    expect(await snapshot(order, sku)).toEqual(before);
  });

  test('a stale run’s compensation leaves the stock the new run holds alone', async () => {
    const acts = activitiesWith(ledgerGateway());
    const sku = await createProduct(db.pool, { stock: 5 });
    const order = await createOrder(db.pool, { items: [{ sku, qty: 2 }] });
    await moveToRun(order, 2);
    expect(await acts.reserveInventory(step(order, 2))).toMatchObject({ outcome: 'RESERVED' });
    expect(await acts.releaseInventory({ ...step(order, 1), reason: 'stray' })).toMatchObject({
      released: false,
      skipped: expect.stringMatching(/run 2/),
    });
    expect(await stockOf(db.pool, sku)).toBe(3);
  });

  test('a retried order’s new run takes over the stock its failed run still holds, not a second share', async () => {
    const acts = activitiesWith(ledgerGateway());
    const { sku, order } = await reserved(acts, { qty: 2, stock: 5 });
    // Run 1 failed with its stock held (its release compensation failed); the order is retried.
    await db.pool.query(`update orders set run = 2, status = 'PENDING' where id = $1::uuid`, [order.orderId]);
    expect(await acts.reserveInventory(step(order, 2))).toMatchObject({ outcome: 'RESERVED' });
    expect(await stockOf(db.pool, sku)).toBe(3);
    // Its event says so: a consumer summing reservations does not count the stock twice.
    const { rows } = await db.pool.query<{ data: { takenOver?: boolean } }>(
      `select payload -> 'data' as data from event_outbox
        where order_id = $1::uuid and type = 'inventory.reserved' order by id`,
      [order.orderId],
    );
    expect(rows.map((r) => r.data.takenOver)).toEqual([undefined, true]);
    // Run 2 now owns it: its release gives it back once, run 1's does nothing.
    expect(await acts.releaseInventory({ ...step(order, 1), reason: 'stray' })).toMatchObject({
      released: false,
    });
    expect(await acts.releaseInventory({ ...step(order, 2), reason: 'failed' })).toMatchObject({
      released: true,
    });
    expect(await acts.releaseInventory({ ...step(order, 2), reason: 'failed' })).toMatchObject({
      released: true,
    });
    expect(await stockOf(db.pool, sku)).toBe(5);
  });

  test('a retried order charges under a key of its own, so the gateway does not replay run 1’s decline', async () => {
    const gateway = ledgerGateway();
    const acts = activitiesWith(gateway);
    const { order } = await reserved(acts);
    await acts.failPayment({ ...step(order), code: 'DEADLINE_EXCEEDED', reason: 'deadline' });
    await db.pool.query(`update orders set run = 2, status = 'RESERVED' where id = $1::uuid`, [
      order.orderId,
    ]);
    await acts.chargePayment(step(order, 2));
    expect(gateway.calls.charge).toEqual([`${order.orderId}:run-2`]);
    expect(await orderStatus(db.pool, order.orderId)).toBe('PAID');
  });
});

describe('money cannot be forgotten', () => {
  test('a capture whose answer was lost stays on record when the next attempt finds the gateway down, and is given back', async () => {
    const gateway = ledgerGateway('lose-answers');
    const acts = activitiesWith(gateway);
    const { order } = await reserved(acts);

    await expect(acts.chargePayment(step(order))).rejects.toThrow(/socket hang up/); // money taken
    gateway.mode = 'down';
    await expect(acts.chargePayment(step(order))).rejects.toMatchObject({ type: 'GatewayUnavailable' });
    expect(await paymentStatus(db.pool, order.orderId)).toBe('CHARGING'); // not forgotten

    const reason = 'payment not captured in time';
    await acts.failPayment({ ...step(order), code: 'DEADLINE_EXCEEDED', reason });
    expect(await paymentStatus(db.pool, order.orderId)).toBe('CHARGING');
    gateway.mode = 'up';
    expect(await acts.refundPayment({ ...step(order), reason })).toEqual({ refunded: true });
    expect(await acts.refundPayment({ ...step(order), reason })).toEqual({ refunded: true }); // a retry

    expect(gateway.held.size).toBe(0); // the customer has their money back
    expect(await paymentStatus(db.pool, order.orderId)).toBe('REFUNDED');
    // Void and refund each under a key of its own, never the charge's.
    expect(gateway.calls.void).toEqual([`void-${order.orderId}`]);
    expect(gateway.calls.refund).toEqual([`refund-${order.orderId}`]);
    expect(await outboxTypes(db.pool, order.orderId)).toEqual([
      'inventory.reserved',
      'payment.failed',
      'payment.refunded',
    ]);
  });

  test('a void is final: an attempt still in flight at the gateway cannot capture after it', async () => {
    const gateway = ledgerGateway();
    const acts = activitiesWith(gateway);
    const { order } = await reserved(acts);
    let release!: () => void;
    let entered!: () => void;
    const inFlight = new Promise<void>((resolve) => (entered = resolve));
    gateway.hooks.beforeDecision = () => {
      entered();
      return new Promise<void>((resolve) => (release = resolve));
    };
    const zombie = acts.chargePayment(step(order)).catch((err: unknown) => err);
    await inFlight; // the intent is committed and the call is at the gateway, undecided

    await acts.failPayment({ ...step(order), code: 'DEADLINE_EXCEEDED', reason: 'deadline' });
    expect(await acts.refundPayment({ ...step(order), reason: 'deadline' })).toEqual({
      refunded: false,
      voided: true,
    });
    release();
    expect(await zombie).toMatchObject({ type: 'PaymentDeclined' });

    expect(gateway.captures).toBe(0);
    expect(gateway.held.size).toBe(0);
    expect(await paymentStatus(db.pool, order.orderId)).toBe('VOIDED');
  });

  test('a capture that landed before the void but was recorded after it is refunded once', async () => {
    const gateway = ledgerGateway();
    const acts = activitiesWith(gateway);
    const { order } = await reserved(acts);
    let release!: () => void;
    let decided!: () => void;
    const captured = new Promise<void>((resolve) => (decided = resolve));
    gateway.hooks.beforeAnswer = () => {
      decided();
      return new Promise<void>((resolve) => (release = resolve));
    };
    const zombie = acts.chargePayment(step(order)).catch((err: unknown) => err);
    await captured; // the gateway took the money; its answer has not reached the activity yet
    gateway.hooks = {};

    await acts.failPayment({ ...step(order), code: 'DEADLINE_EXCEEDED', reason: 'deadline' });
    expect(await acts.refundPayment({ ...step(order), reason: 'deadline' })).toEqual({ refunded: true });
    release();
    expect(await zombie).toMatchObject({ type: 'InvalidOrderStatus' }); // it found the payment settled

    expect(gateway.held.size).toBe(0);
    expect(new Set(gateway.calls.refund)).toEqual(new Set([`refund-${order.orderId}`]));
    expect(await paymentStatus(db.pool, order.orderId)).toBe('REFUNDED');
    expect(await orderStatus(db.pool, order.orderId)).toBe('PAYMENT_FAILED');
    expect((await outboxTypes(db.pool, order.orderId)).filter((t) => t === 'payment.refunded')).toHaveLength(
      1,
    );
  });

  test('the capture of a COMPLETED order is never refunded by a compensation', async () => {
    const gateway = ledgerGateway();
    const acts = activitiesWith(gateway);
    const { order } = await reserved(acts);
    await acts.chargePayment(step(order));
    await acts.completeOrder(step(order));
    expect(await acts.refundPayment({ ...step(order), reason: 'stray' })).toMatchObject({ refunded: false });
    expect(gateway.held.size).toBe(1);
    expect(await paymentStatus(db.pool, order.orderId)).toBe('CAPTURED');
  });
});

describe('text PostgreSQL cannot store', () => {
  test('fails the step at once as a non-retryable DataError, changing nothing', async () => {
    const acts = activitiesWith(ledgerGateway());
    const { sku, order } = await reserved(acts);
    const before = await snapshot(order, sku);
    await expect(acts.cancelOrder({ ...step(order), reason: 'bad\u0000reason' })).rejects.toMatchObject({
      type: 'DataError',
      nonRetryable: true,
    });
    await expect(acts.releaseInventory({ ...step(order), reason: 'bad\u0000reason' })).rejects.toMatchObject({
      type: 'DataError',
    });
    expect(await snapshot(order, sku)).toEqual(before);
  });
});

describe('no forward step of a run acts once its compensation has begun', () => {
  test('a zombie charge after the cancel’s compensations is refused: no capture, the order cancels, stock back', async () => {
    const gateway = ledgerGateway();
    const acts = activitiesWith(gateway);
    const { sku, order } = await reserved(acts);
    const undo = { ...step(order), reason: 'changed my mind', cancelled: true };
    await acts.refundPayment(undo);
    await acts.releaseInventory(undo);

    await expect(acts.chargePayment(step(order))).rejects.toMatchObject({
      type: 'RunUndone',
      nonRetryable: true,
    });
    await expect(acts.completeOrder(step(order))).rejects.toMatchObject({ type: 'RunUndone' });
    await acts.cancelOrder({ ...step(order), reason: 'changed my mind' });

    expect(gateway.captures).toBe(0);
    expect(await orderStatus(db.pool, order.orderId)).toBe('CANCELLED');
    expect(await stockOf(db.pool, sku)).toBe(5);
  });

  test('a zombie reservation after the release is refused: a cancelled order holds no stock', async () => {
    const acts = activitiesWith(ledgerGateway());
    const sku = await createProduct(db.pool, { stock: 5 });
    const order = await createOrder(db.pool, { items: [{ sku, qty: 2 }] });
    const undo = { ...step(order), reason: 'changed my mind', cancelled: true };
    await acts.refundPayment(undo);
    expect(await acts.releaseInventory(undo)).toMatchObject({ released: false });

    await expect(acts.reserveInventory(step(order))).rejects.toMatchObject({ type: 'RunUndone' });
    await acts.cancelOrder({ ...step(order), reason: 'changed my mind' });
    expect(await stockOf(db.pool, sku)).toBe(5);
    expect(await orderStatus(db.pool, order.orderId)).toBe('CANCELLED');
  });

  test('a reset of a run that compensated while RESERVED cannot go on to charge and complete with the stock back', async () => {
    const gateway = ledgerGateway();
    const acts = activitiesWith(gateway);
    const { sku, order } = await reserved(acts);
    // A step failed; the saga compensated (refund: nothing; release: stock back) and the run failed.
    await acts.refundPayment({ ...step(order), reason: 'saga failed' });
    await acts.releaseInventory({ ...step(order), reason: 'saga failed' });

    // A reset to the first workflow task re-runs the steps: the first refuses.
    await expect(acts.reserveInventory(step(order))).rejects.toMatchObject({ type: 'RunUndone' });
    await expect(acts.chargePayment(step(order))).rejects.toMatchObject({ type: 'RunUndone' });
    expect(gateway.captures).toBe(0);
    expect(await stockOf(db.pool, sku)).toBe(5);
    expect(await orderStatus(db.pool, order.orderId)).toBe('RESERVED'); // for an operator's retry
  });

  test('a charge in flight when the compensation begins is given back when it lands', async () => {
    const gateway = ledgerGateway();
    const acts = activitiesWith(gateway);
    const { order } = await reserved(acts);
    let release!: () => void;
    let decided!: () => void;
    const captured = new Promise<void>((resolve) => (decided = resolve));
    gateway.hooks.beforeAnswer = () => {
      decided();
      return new Promise<void>((resolve) => (release = resolve));
    };
    const zombie = acts.chargePayment(step(order)).catch((err: unknown) => err);
    await captured;
    gateway.hooks = {};
    // The compensation marks the run undone, then finds the charge captured at the gateway: refunded.
    expect(await acts.refundPayment({ ...step(order), reason: 'cancel', cancelled: true })).toEqual({
      refunded: true,
    });
    release();
    expect(await zombie).toMatchObject({ type: 'InvalidOrderStatus' });
    expect(gateway.held.size).toBe(0);
    expect(await orderStatus(db.pool, order.orderId)).toBe('RESERVED');
  });
});

describe('a second attempt cannot lose the first one’s doubt', () => {
  test('"not reached" for one attempt while another opens does not delete the intent the other charges under', async () => {
    // Charge #1 waits at a gate, then is "not reached"; charge #2 takes the money and its answer is lost.
    const gateway = ledgerGateway();
    let calls = 0;
    const gate = holdPoint();
    const charge = gateway.charge.bind(gateway);
    gateway.charge = async (request, signal) => {
      calls += 1;
      if (calls === 1) {
        await gate.hold();
        throw new GatewayUnavailableError('simulated: not reached');
      }
      gateway.mode = 'lose-answers';
      return charge(request, signal);
    };
    const acts = activitiesWith(gateway);
    const { order } = await reserved(acts);
    const a = acts.chargePayment(step(order)).catch((err: unknown) => err);
    await gate.reached;

    // Order the two writers with a third connection holding the intent's row: A's "not reached"
    // queues first, B's opening second.
    const locker = await db.pool.connect();
    try {
      await locker.query('begin');
      await locker.query('select 1 from payments where order_id = $1::uuid for update', [order.orderId]);
      const waiters = (n: number) =>
        waitFor(
          async () => {
            const { rows } = await db.pool.query<{ n: number }>(
              `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
            );
            return rows[0]!.n >= n;
          },
          { what: `${n} lock waiter(s)` },
        );
      gate.open();
      await waiters(1);
      const b = acts.chargePayment(step(order)).catch((err: unknown) => err);
      await waiters(2);
      await locker.query('commit');
      expect(await a).toMatchObject({ type: 'GatewayUnavailable' });
      expect(String(await b)).toMatch(/socket hang up/);
    } finally {
      locker.release();
    }
    gateway.mode = 'up';
    expect(await paymentStatus(db.pool, order.orderId)).toBe('CHARGING'); // B's charge is on record
    await acts.failPayment({ ...step(order), code: 'DEADLINE_EXCEEDED', reason: 'deadline' });
    await acts.refundPayment({ ...step(order), reason: 'deadline' });
    expect(gateway.held.size).toBe(0);
  });
});

describe('a late "not reached" keeps the failure on record', () => {
  test('an attempt that ends "not reached" after the deadline failed the payment leaves the reason, not nothing', async () => {
    // The attempt waits at the gateway past its deadline; the saga fails the payment meanwhile.
    const gateway = ledgerGateway();
    const gate = holdPoint();
    gateway.charge = async () => {
      await gate.hold();
      throw new GatewayUnavailableError('simulated: not reached');
    };
    const acts = activitiesWith(gateway);
    const { order } = await reserved(acts);
    const attempt = acts.chargePayment(step(order)).catch((err: unknown) => err);
    await gate.reached;
    await acts.failPayment({ ...step(order), code: 'DEADLINE_EXCEEDED', reason: 'payment deadline passed' });
    gate.open();
    expect(await attempt).toMatchObject({ type: 'GatewayUnavailable' });

    // Nothing reached the gateway, so nothing is held; but why the payment failed is still there.
    const { rows } = await db.pool.query<{ status: string; failure_reason: string | null }>(
      'select status, failure_reason from payments where order_id = $1::uuid',
      [order.orderId],
    );
    expect(rows).toEqual([{ status: 'DECLINED', failure_reason: expect.stringMatching(/deadline/) }]);
    expect(
      await retryOrder(db.pool, order.orderId, { reason: 'test', latest: undefined, dryRun: true }),
    ).toMatchObject({ kind: 'retried' });
  });
});

describe("a customer's recorded cancel", () => {
  test('stops the charge of a run that never took it (the update lost to an outage): nothing charged', async () => {
    const gateway = ledgerGateway();
    const acts = activitiesWith(gateway);
    const { order } = await reserved(acts);
    // The API recorded the cancel; the update never reached the saga (503 to the customer).
    expect(await recordCancelRequest(db.pool, order.orderId)).toMatchObject({ status: 'RESERVED' });
    await expect(acts.chargePayment(step(order))).rejects.toMatchObject({
      type: 'CancelRequested',
      nonRetryable: true,
    });
    expect(gateway.calls.charge).toEqual([]);
    expect(await paymentStatus(db.pool, order.orderId)).toBeUndefined();
    expect(await orderStatus(db.pool, order.orderId)).toBe('RESERVED'); // the saga cancels it next
  });
});

describe('a charge that finds its key voided', () => {
  test('records the void the compensation made, not a decline', async () => {
    const gateway = ledgerGateway();
    const gate = holdPoint();
    gateway.hooks.beforeDecision = () => {
      return gate.hold();
    };
    const acts = activitiesWith(gateway);
    const { order } = await reserved(acts);
    const attempt = acts.chargePayment(step(order)).catch((err: unknown) => err);
    await gate.reached;
    // The compensation voids the charge key at the gateway; its own record of the void comes after.
    const key = chargeKey(order.orderId, 1);
    expect(await gateway.void({ idempotencyKey: voidKey(key), chargeKey: key })).toEqual({
      outcome: 'voided',
    });
    gate.open();
    expect(await attempt).toMatchObject({ type: 'PaymentDeclined' });

    expect(await paymentStatus(db.pool, order.orderId)).toBe('VOIDED');
    expect(await acts.refundPayment({ ...step(order), reason: 'deadline' })).toEqual({
      refunded: false,
      voided: true,
    });
    expect(gateway.captures).toBe(0);
  });
});

describe('retrying a failed order', () => {
  test('an order whose first run is still waiting to start is not retried: nothing failed', async () => {
    const sku = await createProduct(db.pool, { stock: 5 });
    const order = await createOrder(db.pool, { items: [{ sku, qty: 1 }] });
    // Its order.placed waits (the bridge is down, or behind a backlog): run 1 will start.
    await db.pool.query(
      `insert into event_outbox (event_id, type, order_id, payload) values (gen_random_uuid(), 'order.placed', $1::uuid, '{}')`,
      [order.orderId],
    );
    expect(await retryOrder(db.pool, order.orderId, { reason: 'test', latest: undefined })).toEqual({
      kind: 'already_retrying',
      run: 1,
      status: 'PENDING',
      started: false,
    });
    expect(await outboxTypes(db.pool, order.orderId)).toEqual(['order.placed']);
    // Its event gone, nothing would start run 1: a retry (reconcile's fix) sets the order going.
    await db.pool.query(`delete from event_outbox where order_id = $1::uuid`, [order.orderId]);
    expect(await retryOrder(db.pool, order.orderId, { reason: 'test', latest: undefined })).toMatchObject({
      kind: 'retried',
      run: 2,
    });
  });

  test('a retried order whose new run never started: already retrying while its order.retried waits, retried again once that is gone', async () => {
    const acts = activitiesWith(ledgerGateway());
    const { order } = await reserved(acts);
    await acts.refundPayment({ ...step(order), reason: 'saga failed' });
    await acts.releaseInventory({ ...step(order), reason: 'saga failed' });
    await db.pool.query(`update orders set started_run = 1 where id = $1::uuid`, [order.orderId]);
    expect(await retryOrder(db.pool, order.orderId, { reason: 'test', latest: undefined })).toMatchObject({
      kind: 'retried',
      run: 2,
    });
    // Its order.retried waits for the bridge: a second retry starts nothing more.
    expect(await retryOrder(db.pool, order.orderId, { reason: 'test', latest: undefined })).toEqual({
      kind: 'already_retrying',
      run: 2,
      status: 'PENDING',
      started: false,
    });
    // The event is gone (deleted by hand; pruning keeps an unfinished order's rows): nothing will
    // start run 2, so a retry may.
    await db.pool.query(`delete from event_outbox where order_id = $1::uuid and type = 'order.retried'`, [
      order.orderId,
    ]);
    expect(await retryOrder(db.pool, order.orderId, { reason: 'test', latest: undefined })).toMatchObject({
      kind: 'retried',
      run: 3,
    });
  });

  test('a completed order is refused even while Temporal still lists its run as open', async () => {
    const sku = await createProduct(db.pool, { stock: 5 });
    const order = await createOrder(db.pool, { items: [{ sku, qty: 1 }] });
    // Run 2 (a retry's) has just completed the order; visibility trails it and still says open.
    await db.pool.query(
      `update orders set run = 2, started_run = 2, status = 'COMPLETED' where id = $1::uuid`,
      [order.orderId],
    );
    expect(
      await retryOrder(db.pool, order.orderId, { reason: 'test', latest: { run: 2, open: true } }),
    ).toMatchObject({ kind: 'refused', reason: expect.stringMatching(/COMPLETED/) });
    expect(await outboxTypes(db.pool, order.orderId)).toEqual([]);
  });

  test('a failed run still open (its refund waits out a gateway outage) is refused as still going, not "already retrying"', async () => {
    const acts = activitiesWith(ledgerGateway());
    const { order } = await reserved(acts);
    await acts.chargePayment(step(order));
    // Run 2 (a retry's) failed its payment; its compensation is still retrying, so the run is open.
    await db.pool.query(
      `update orders set run = 2, started_run = 2, status = 'PAYMENT_FAILED' where id = $1::uuid`,
      [order.orderId],
    );
    expect(
      await retryOrder(db.pool, order.orderId, { reason: 'test', latest: { run: 2, open: true } }),
    ).toMatchObject({ kind: 'refused', reason: expect.stringMatching(/still going/) });
  });

  test('a retried order cancelled before its new run reserves gives its stock back', async () => {
    const acts = activitiesWith(ledgerGateway());
    const { sku, order } = await reserved(acts, { qty: 2, stock: 5 });
    // Run 1 failed holding its stock (a compensation that failed); an operator retries it.
    expect(await retryOrder(db.pool, order.orderId, { reason: 'test', latest: undefined })).toMatchObject({
      kind: 'retried',
      run: 2,
    });
    // The customer cancels before run 2 started: the API cancels the PENDING order directly.
    expect(await cancelOrderWithoutSaga(db.pool, order.orderId, 'changed my mind')).toEqual({
      kind: 'cancelled',
      placedAt: expect.any(Date),
    });
    expect(await stockOf(db.pool, sku)).toBe(5);
    expect(await outboxTypes(db.pool, order.orderId)).toEqual([
      'inventory.reserved',
      'order.retried',
      'inventory.released', // stock back first, as the saga's cancel does
      'order.cancelled',
    ]);
  });

  test('a PAID order whose run failed after the charge and gave it back is retried: charged once more, stock taken once', async () => {
    const gateway = ledgerGateway();
    const acts = activitiesWith(gateway);
    const { sku, order } = await reserved(acts, { qty: 2, stock: 5 });
    await acts.chargePayment(step(order));
    // Its last step failed for good (a bad deploy of completeOrder): the saga gave everything back.
    await acts.refundPayment({ ...step(order), reason: 'saga failed: completeOrder' });
    await acts.releaseInventory({ ...step(order), reason: 'saga failed: completeOrder' });
    expect(await orderStatus(db.pool, order.orderId)).toBe('PAID');
    expect(await stockOf(db.pool, sku)).toBe(5);
    expect(gateway.held.size).toBe(0);

    expect(
      await retryOrder(db.pool, order.orderId, { reason: 'flagged by the fraud team', latest: undefined }),
    ).toEqual({
      kind: 'retried',
      run: 2,
      previousStatus: 'PAID',
    });
    // The customer reads the status reason: fixed wording, not the operator's note.
    const { rows } = await db.pool.query<{ status_reason: string }>(
      'select status_reason from orders where id = $1::uuid',
      [order.orderId],
    );
    expect(rows[0]!.status_reason).toBe('retried: running again');
    expect(await acts.reserveInventory(step(order, 2))).toMatchObject({ outcome: 'RESERVED' });
    await acts.chargePayment(step(order, 2));
    await acts.notifyCustomer({ ...step(order, 2), kind: 'order-completed' });
    await acts.completeOrder(step(order, 2));
    expect(await orderStatus(db.pool, order.orderId)).toBe('COMPLETED');
    expect(await stockOf(db.pool, sku)).toBe(3); // sold once
    expect(gateway.captures).toBe(2); // run 1's, refunded, and run 2's, which stands
    expect([...gateway.held.keys()]).toEqual([chargeKey(order.orderId, 2)]);
    // A second retry of the completed order changes nothing.
    expect(await retryOrder(db.pool, order.orderId, { reason: 'again', latest: undefined })).toMatchObject({
      kind: 'refused',
      reason: expect.stringMatching(/COMPLETED/),
    });
  });

  test('a PAID order is not retried while its capture stands: a run stopped before giving it back', async () => {
    const gateway = ledgerGateway();
    const acts = activitiesWith(gateway);
    const { sku, order } = await reserved(acts);
    await acts.chargePayment(step(order));
    // The run stopped after the charge (terminated): its sale is in progress, not failed.
    const before = await snapshot(order, sku);
    expect(await retryOrder(db.pool, order.orderId, { reason: 'test', latest: undefined })).toMatchObject({
      kind: 'refused',
      reason: expect.stringMatching(/never began to give the money back.*orders reset/),
    });
    // Its compensation began (undo_run) but stopped before the refund: the money is held.
    await db.pool.query(`update orders set undo_run = run where id = $1::uuid`, [order.orderId]);
    expect(await retryOrder(db.pool, order.orderId, { reason: 'test', latest: undefined })).toMatchObject({
      kind: 'refused',
      reason: expect.stringMatching(/CAPTURED: money is held/),
    });
    expect(await snapshot(order, sku)).toEqual(before);
    expect(gateway.held.size).toBe(1);
  });

  test('an order its customer cancelled is never revived by a retry, even when its cancel did not finish', async () => {
    const acts = activitiesWith(ledgerGateway());
    const { order } = await reserved(acts);
    await acts.refundPayment({ ...step(order), reason: 'changed my mind', cancelled: true });
    // ... its release then failed for good: the order is left RESERVED, no run open.
    expect(await retryOrder(db.pool, order.orderId, { reason: 'test', latest: undefined })).toMatchObject({
      kind: 'refused',
      reason: expect.stringMatching(/a cancel was asked for this order/),
    });
  });

  test('an order a failed run left RESERVED, undone, is cancelled when its customer asks: not stuck for good', async () => {
    const acts = activitiesWith(ledgerGateway());
    const { sku, order } = await reserved(acts);
    // A step failed; the saga compensated (refund: nothing; release: stock back) and the run failed.
    await acts.refundPayment({ ...step(order), reason: 'saga failed' });
    await acts.releaseInventory({ ...step(order), reason: 'saga failed' });
    // The customer cancels (no saga runs): the mark makes any retry refuse, so only this ends it.
    expect(await recordCancelRequest(db.pool, order.orderId)).toMatchObject({ status: 'RESERVED' });
    expect(await cancelOrderWithoutSaga(db.pool, order.orderId, 'changed my mind')).toEqual({
      kind: 'cancelled',
      placedAt: expect.any(Date),
    });
    expect(await orderStatus(db.pool, order.orderId)).toBe('CANCELLED');
    expect(await stockOf(db.pool, sku)).toBe(5); // given back once, by the run's release
    expect(await outboxTypes(db.pool, order.orderId)).toEqual([
      'inventory.reserved',
      'inventory.released',
      'order.cancelled',
    ]);
  });

  test('a PAID order whose failed run refunded its capture is cancelled when its customer asks: not "already paid" for good', async () => {
    const gateway = ledgerGateway();
    const acts = activitiesWith(gateway);
    const { sku, order } = await reserved(acts, { qty: 2, stock: 5 });
    await acts.chargePayment(step(order));
    // Its last step failed for good; the saga refunded the capture and the run failed holding the stock.
    await acts.refundPayment({ ...step(order), reason: 'saga failed' });
    expect(await recordCancelRequest(db.pool, order.orderId)).toMatchObject({
      status: 'PAID',
      runUndone: true,
    });
    expect(await cancelOrderWithoutSaga(db.pool, order.orderId, 'changed my mind')).toEqual({
      kind: 'cancelled',
      placedAt: expect.any(Date),
    });
    expect(await orderStatus(db.pool, order.orderId)).toBe('CANCELLED');
    expect(await stockOf(db.pool, sku)).toBe(5); // the stock its run still held, given back with the cancel
    expect(gateway.held.size).toBe(0);
    expect(await outboxTypes(db.pool, order.orderId)).toEqual([
      'inventory.reserved',
      'payment.completed',
      'payment.refunded',
      'inventory.released',
      'order.cancelled',
    ]);
  });

  test('a PAID order whose capture stands is not cancelled in the database, undone or not', async () => {
    const acts = activitiesWith(ledgerGateway());
    const { sku, order } = await reserved(acts);
    await acts.chargePayment(step(order));
    const before = await snapshot(order, sku);
    expect(await cancelOrderWithoutSaga(db.pool, order.orderId, 'changed my mind')).toEqual({
      kind: 'refused',
      status: 'PAID',
      reason: 'too late: order is already paid',
    });
    await db.pool.query(`update orders set undo_run = run where id = $1::uuid`, [order.orderId]);
    expect(await cancelOrderWithoutSaga(db.pool, order.orderId, 'changed my mind')).toMatchObject({
      kind: 'refused',
      reason: expect.stringMatching(/CAPTURED/),
    });
    expect(await snapshot(order, sku)).toEqual(before);
  });

  test('a failed run’s stock still held when its customer cancels is given back once, with the cancel', async () => {
    const acts = activitiesWith(ledgerGateway());
    const { sku, order } = await reserved(acts, { qty: 2, stock: 5 });
    // The compensation began (refund: nothing to give back) and its release then failed for good.
    await acts.refundPayment({ ...step(order), reason: 'saga failed' });
    expect(await stockOf(db.pool, sku)).toBe(3);
    expect((await cancelOrderWithoutSaga(db.pool, order.orderId, 'changed my mind')).kind).toBe('cancelled');
    expect(await stockOf(db.pool, sku)).toBe(5);
    // The run's release, run again later (a reset), finds nothing of its own to give back.
    expect(await acts.releaseInventory({ ...step(order), reason: 'saga failed' })).toMatchObject({
      released: true,
    });
    expect(await stockOf(db.pool, sku)).toBe(5);
  });

  test('a failed run whose money is of unknown fate is not cancelled in the database: an operator settles it', async () => {
    const gateway = ledgerGateway('lose-answers');
    const acts = activitiesWith(gateway);
    const { sku, order } = await reserved(acts);
    await expect(acts.chargePayment(step(order))).rejects.toThrow(/socket hang up/); // money taken
    gateway.mode = 'down';
    // The compensation began; its refund cannot reach the gateway, and the run failed.
    await expect(acts.refundPayment({ ...step(order), reason: 'saga failed' })).rejects.toMatchObject({
      type: 'GatewayUnavailable',
    });
    const before = await snapshot(order, sku);
    expect(await cancelOrderWithoutSaga(db.pool, order.orderId, 'changed my mind')).toEqual({
      kind: 'refused',
      status: 'RESERVED',
      reason: expect.stringMatching(
        /payment \(CHARGING\) that its stopped run did not give back: an operator settles it/,
      ),
    });
    expect(await snapshot(order, sku)).toEqual(before);
  });

  test('a RESERVED order whose run never undid itself is not cancelled behind its saga', async () => {
    const acts = activitiesWith(ledgerGateway());
    const { sku, order } = await reserved(acts);
    const before = await snapshot(order, sku);
    expect(await cancelOrderWithoutSaga(db.pool, order.orderId, 'changed my mind')).toMatchObject({
      kind: 'refused',
      status: 'RESERVED',
    });
    expect(await snapshot(order, sku)).toEqual(before);
  });

  test('a PAID order whose failed run refunded but stopped before the release is retried: its stock is taken over, not taken twice', async () => {
    const acts = activitiesWith(ledgerGateway());
    const { sku, order } = await reserved(acts, { qty: 2, stock: 5 });
    await acts.chargePayment(step(order));
    await acts.refundPayment({ ...step(order), reason: 'saga failed: refund only' });
    expect(await stockOf(db.pool, sku)).toBe(3);
    expect(await retryOrder(db.pool, order.orderId, { reason: 'test', latest: undefined })).toMatchObject({
      kind: 'retried',
      run: 2,
    });
    expect(await acts.reserveInventory(step(order, 2))).toMatchObject({ outcome: 'RESERVED' });
    expect(await stockOf(db.pool, sku)).toBe(3);
    // Its event says so: a consumer summing reservations does not count the stock twice.
    const { rows } = await db.pool.query<{ data: { takenOver?: boolean } }>(
      `select payload -> 'data' as data from event_outbox
        where order_id = $1::uuid and type = 'inventory.reserved' order by id`,
      [order.orderId],
    );
    expect(rows.map((r) => r.data.takenOver)).toEqual([undefined, true]);
    // Run 1's release, run again later (a reset of it), leaves the stock run 2 holds alone.
    await expect(acts.releaseInventory({ ...step(order), reason: 'late' })).resolves.toMatchObject({
      released: false,
    });
    expect(await stockOf(db.pool, sku)).toBe(3);
  });
});
