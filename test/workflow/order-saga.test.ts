/**
 * The order saga on the time-skipping server with its real activities against a real PostgreSQL
 * test database. Fault branches inject a gateway that is down or declines, or a compensation that
 * fails; nothing stands in for the infrastructure.
 */
import {
  WorkflowFailedError,
  WorkflowUpdateFailedError,
  WorkflowUpdateStage,
  type WorkflowHandle,
} from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createLogger } from '../../lib/logger.js';
import { createNotificationActivities } from '../../activities/notification.js';
import { SEARCH_ATTRIBUTES, WORKFLOW_TYPE, cancelUpdate, statusQuery } from '../../workflows/contract.js';
import * as workflows from '../../workflows/index.js';
import { recordCancelReason, recordCancelRequest } from '../../db/orders.js';
import { cancelWording } from '../../domain/cancel.js';
import { createProduct } from '../helpers/db.js';
import { GatewayUnavailableError } from '../../activities/payment-gateway.js';
import { downGateway, downRecordingCancel, ledgerGateway } from './fixtures/gateways.js';
import {
  captureThenLoseCompletion,
  createSagaHarness,
  holdFailPayment,
  type SagaHarness,
} from './fixtures/harness.js';
import { waitUntil } from '../helpers/wait.js';
import {
  createOrder,
  notificationKinds,
  orderStatus,
  outboxTypes,
  paymentStatus,
  sagaInput,
  stockOf,
} from './fixtures/orders.js';

let h: SagaHarness;
beforeAll(async () => {
  h = await createSagaHarness();
});
afterAll(async () => {
  await h?.close();
});

/** Cancelled after its reservation: the order CANCELLED, its 5 units back, the cancel's events and e-mail. */
async function expectCancelledWithStockBack(orderId: string, sku: string): Promise<void> {
  expect(await stockOf(h.db.pool, sku)).toBe(5);
  expect(await orderStatus(h.db.pool, orderId)).toBe('CANCELLED');
  expect(await outboxTypes(h.db.pool, orderId)).toEqual([
    'inventory.reserved',
    'inventory.released',
    'order.cancelled',
  ]);
  expect(await notificationKinds(h.db.pool, orderId)).toEqual(['order-cancelled']);
}

/**
 * Asks the saga to cancel while its deadline's failPayment is held (`holdFailPayment`), once
 * `before` has run, then lets failPayment go on; the update's answer, or what it failed with.
 */
async function cancelWhileFailPaymentDecides(
  handle: WorkflowHandle,
  held: ReturnType<typeof holdFailPayment>,
  reason: string,
  before: (args: Awaited<typeof held.asked>) => Promise<void> = async () => undefined,
): Promise<unknown> {
  await before(await held.asked);
  const update = await handle.startUpdate(cancelUpdate, {
    args: [{ reason }],
    waitForStage: WorkflowUpdateStage.ACCEPTED,
  });
  held.release();
  return update.result().catch((err: unknown) => err);
}

/** The customer's cancel recorded on the order as the API records it (request, then its code), the saga not told. */
async function recordCancel(orderId: string): Promise<void> {
  await recordCancelRequest(h.db.pool, orderId);
  await recordCancelReason(h.db.pool, orderId, { code: 'changed_mind', note: 'x', confirmed: false });
}

function eventTimeMs(event: temporal.api.history.v1.IHistoryEvent): number {
  const t = event.eventTime!;
  return Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
}

/** The local activities a history ran, by type, in order (their markers). */
function localActivities(history: temporal.api.history.v1.IHistory): string[] {
  return (history.events ?? [])
    .filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity')
    .map((e) => {
      const data = e.markerRecordedEventAttributes!.details!['data']!.payloads![0]!.data!;
      return (JSON.parse(Buffer.from(data).toString()) as { activity_type: string }).activity_type;
    });
}

function scheduledActivities(history: temporal.api.history.v1.IHistory) {
  return (history.events ?? [])
    .filter((e) => e.activityTaskScheduledEventAttributes)
    .map((e) => ({ name: e.activityTaskScheduledEventAttributes!.activityType!.name!, at: eventTimeMs(e) }));
}

test('the bundle exports the workflow under the contract’s workflow type', () => {
  expect(Object.keys(workflows)).toContain(WORKFLOW_TYPE);
});

describe('happy path', () => {
  test('reserves, charges, notifies and completes, with one event per step and the search attribute current', async () => {
    const sku = await createProduct(h.db.pool, { stock: 5, price: '12.50' });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 2, unitPrice: '12.50' }] });
    const worker = await h.worker();

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order));
      expect(await handle.result()).toEqual({ orderId: order.orderId, status: 'COMPLETED' });

      const state = await handle.query(statusQuery);
      expect(state).toMatchObject({ status: 'COMPLETED', step: 'DONE', compensationFailures: [] });
      const description = await handle.describe();
      expect(description.typedSearchAttributes.get(SEARCH_ATTRIBUTES.OrderStatus)).toBe('COMPLETED');
      expect(description.typedSearchAttributes.get(SEARCH_ATTRIBUTES.FailureReason)).toBeUndefined();

      // The lean shape (PATCHES.leanShape): the database steps and the e-mail local, only the
      // charge regular, no deadline timer for a charge that succeeds at once, one status upsert at
      // the end, one patch (its marker and TemporalChangeVersion upsert); two workflow tasks and 17
      // events in all.
      const { events } = await handle.fetchHistory();
      expect(scheduledActivities({ events }).map((a) => a.name)).toEqual(['chargePayment']);
      expect(localActivities({ events })).toEqual(['reserveInventory', 'notifyCustomer', 'completeOrder']);
      expect(events!.filter((e) => e.workflowTaskCompletedEventAttributes)).toHaveLength(2);
      expect(events!.filter((e) => e.timerStartedEventAttributes)).toHaveLength(0);
      const upserts = events!.filter((e) => e.upsertWorkflowSearchAttributesEventAttributes);
      const upserted = upserts.map((e) =>
        Object.keys(e.upsertWorkflowSearchAttributesEventAttributes!.searchAttributes!.indexedFields!),
      );
      expect(upserted).toEqual([['TemporalChangeVersion'], ['OrderStatus']]);
      expect(events).toHaveLength(17);
    });

    expect(await stockOf(h.db.pool, sku)).toBe(3);
    expect(await orderStatus(h.db.pool, order.orderId)).toBe('COMPLETED');
    expect(await paymentStatus(h.db.pool, order.orderId)).toBe('CAPTURED');
    expect(await outboxTypes(h.db.pool, order.orderId)).toEqual([
      'inventory.reserved',
      'payment.completed',
      'order.completed',
    ]);
    expect(await notificationKinds(h.db.pool, order.orderId)).toEqual(['order-completed']);
    const { rows } = await h.db.pool.query(
      `select payload from event_outbox where order_id = $1::uuid and type = 'payment.completed'`,
      [order.orderId],
    );
    expect(rows[0].payload).toMatchObject({
      correlationId: order.correlationId,
      data: { amount: '25.00', currency: 'USD', customerId: order.customerId },
    });
  });
});

describe('out of stock', () => {
  test('reserves nothing when any item is short, records which, notifies and ends OUT_OF_STOCK', async () => {
    const plenty = await createProduct(h.db.pool, { stock: 10 });
    const scarce = await createProduct(h.db.pool, { stock: 1 });
    const order = await createOrder(h.db.pool, {
      items: [
        { sku: plenty, qty: 2 },
        { sku: scarce, qty: 3 },
      ],
    });
    const worker = await h.worker();

    const result = await worker.runUntil(async () => (await h.start(worker, sagaInput(order))).result());

    expect(result).toMatchObject({ status: 'OUT_OF_STOCK', reason: `out of stock: ${scarce}` });
    expect(await stockOf(h.db.pool, plenty)).toBe(10);
    expect(await stockOf(h.db.pool, scarce)).toBe(1);
    expect(await orderStatus(h.db.pool, order.orderId)).toBe('OUT_OF_STOCK');
    expect(await outboxTypes(h.db.pool, order.orderId)).toEqual(['order.out_of_stock']);
    const { rows } = await h.db.pool.query(`select payload from event_outbox where order_id = $1::uuid`, [
      order.orderId,
    ]);
    expect(rows[0].payload.data).toEqual({ unavailable: [{ sku: scarce, requested: 3, available: 1 }] });
    expect(await notificationKinds(h.db.pool, order.orderId)).toEqual(['out-of-stock']);
    expect(await paymentStatus(h.db.pool, order.orderId)).toBeUndefined();
  });

  test('an order cancelled by the API before the saga started ends CANCELLED without reserving', async () => {
    const sku = await createProduct(h.db.pool, { stock: 4 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 1 }], status: 'CANCELLED' });
    const worker = await h.worker();

    const result = await worker.runUntil(async () => (await h.start(worker, sagaInput(order))).result());

    expect(result.status).toBe('CANCELLED');
    expect(await stockOf(h.db.pool, sku)).toBe(4);
    expect(await outboxTypes(h.db.pool, order.orderId)).toEqual([]);
    expect(await notificationKinds(h.db.pool, order.orderId)).toEqual(['order-cancelled']);
  });
});

describe('payment failure', () => {
  test('a decline fails the payment (not retried) and compensates: stock back, events in order, customer told', async () => {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, {
      items: [{ sku, qty: 2 }],
      customerId: `${h.config.PAYMENT_DECLINE_CUSTOMER_PREFIX}-C1-${Date.now()}`,
    });
    const worker = await h.worker();

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order));
      const result = await handle.result();
      expect(result.status).toBe('PAYMENT_FAILED');
      expect(result.reason).toMatch(/declined/);
      const charges = scheduledActivities(await handle.fetchHistory()).filter(
        (a) => a.name === 'chargePayment',
      );
      expect(charges).toHaveLength(1);
      const { events } = await handle.fetchHistory();
      const attempts = events!.find(
        (e) => e.activityTaskStartedEventAttributes,
      )!.activityTaskStartedEventAttributes!;
      expect(attempts.attempt).toBe(1); // non-retryable: one attempt only
      const description = await handle.describe();
      expect(description.typedSearchAttributes.get(SEARCH_ATTRIBUTES.OrderStatus)).toBe('PAYMENT_FAILED');
      expect(description.typedSearchAttributes.get(SEARCH_ATTRIBUTES.FailureReason)).toBe('DECLINED');
    });

    expect(await stockOf(h.db.pool, sku)).toBe(5);
    expect(await orderStatus(h.db.pool, order.orderId)).toBe('PAYMENT_FAILED');
    expect(await paymentStatus(h.db.pool, order.orderId)).toBe('DECLINED');
    expect(await outboxTypes(h.db.pool, order.orderId)).toEqual([
      'inventory.reserved',
      'payment.failed',
      'inventory.released',
    ]);
    const { rows } = await h.db.pool.query(
      `select payload -> 'data' ->> 'code' as code from event_outbox where order_id = $1::uuid and type = 'payment.failed'`,
      [order.orderId],
    );
    expect(rows[0].code).toBe('DECLINED');
    expect(await notificationKinds(h.db.pool, order.orderId)).toEqual(['payment-failed']);
  });

  test('a gateway that stays down is retried with backoff until the deadline, and compensation happens exactly then', async () => {
    const deadlineMs = 10 * 60_000;
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 3 }] });
    const gateway = downGateway();
    const worker = await h.worker({ gateway });

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order, deadlineMs));
      const wallStart = performance.now();
      const result = await handle.result();
      const wallMs = performance.now() - wallStart;
      expect(result).toMatchObject({
        status: 'PAYMENT_FAILED',
        reason: `payment not captured within ${deadlineMs} ms`,
      });
      expect(wallMs).toBeLessThan(30_000); // ten virtual minutes, skipped
      const description = await handle.describe();
      expect(description.typedSearchAttributes.get(SEARCH_ATTRIBUTES.FailureReason)).toBe(
        'DEADLINE_EXCEEDED',
      );
      // The deadline timer, started when the first attempt failed, named for the Web UI.
      const timer = (await handle.fetchHistory()).events!.find((e) => e.timerStartedEventAttributes)!;
      const summary = timer.userMetadata?.summary?.data;
      expect(summary && JSON.parse(Buffer.from(summary).toString())).toBe('payment deadline 10m');

      const history = await handle.fetchHistory();
      const startedAt = eventTimeMs(history.events![0]!);
      const activities = scheduledActivities(history);
      const failAt = activities.find((a) => a.name === 'failPayment')!.at - startedAt;
      const releaseAt = activities.find((a) => a.name === 'releaseInventory')!.at - startedAt;
      // Not before the deadline, and right after it (not at some later retry).
      expect(failAt).toBeGreaterThanOrEqual(deadlineMs);
      expect(failAt).toBeLessThan(deadlineMs + 5_000);
      expect(releaseAt).toBeGreaterThanOrEqual(deadlineMs);
      expect(releaseAt).toBeLessThan(deadlineMs + 5_000);
    });

    expect(gateway.attempts).toBeGreaterThan(3); // retried with backoff meanwhile
    expect(await stockOf(h.db.pool, sku)).toBe(5);
    expect(await orderStatus(h.db.pool, order.orderId)).toBe('PAYMENT_FAILED');
    expect(await outboxTypes(h.db.pool, order.orderId)).toEqual([
      'inventory.reserved',
      'payment.failed',
      'inventory.released',
    ]);
    const { rows } = await h.db.pool.query(
      `select payload -> 'data' ->> 'code' as code from event_outbox where order_id = $1::uuid and type = 'payment.failed'`,
      [order.orderId],
    );
    expect(rows[0].code).toBe('DEADLINE_EXCEEDED');
    expect(await notificationKinds(h.db.pool, order.orderId)).toEqual(['payment-failed']);
  });
  test('a capture that committed but whose completion was lost, then the deadline: the capture stands, the order completes', async () => {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 1 }] });
    // The first attempt commits the capture, then is lost (a worker crash, a lost response).
    const { counter, activityOverrides } = captureThenLoseCompletion(h);
    const worker = await h.worker({ activityOverrides });

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order, 500)); // the retry comes after the deadline
      expect(await handle.result()).toEqual({ orderId: order.orderId, status: 'COMPLETED' });
    });
    expect(counter.attempts).toBe(1);
    expect(await orderStatus(h.db.pool, order.orderId)).toBe('COMPLETED');
    expect(await paymentStatus(h.db.pool, order.orderId)).toBe('CAPTURED');
    expect(await stockOf(h.db.pool, sku)).toBe(4);
    expect(await outboxTypes(h.db.pool, order.orderId)).toEqual([
      'inventory.reserved',
      'payment.completed',
      'order.completed',
    ]);
    expect(await notificationKinds(h.db.pool, order.orderId)).toEqual(['order-completed']);
  });
});

describe('cancel', () => {
  test('accepted before capture: the charge is cancelled, stock comes back, the order ends CANCELLED', async () => {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 2 }] });
    const gateway = downGateway();
    const worker = await h.worker({ gateway });

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order));
      // Once the charge is being retried: a cancel landing in the instant the first attempt ends is a
      // race the time-skipping server loses (it drops that attempt's failure, the saga never hears of
      // it); the dev server's handling of it is covered by test/integration/saga-races.test.ts.
      await waitUntil(
        async () => ({ step: (await handle.query(statusQuery)).step, attempts: gateway.attempts }),
        (s) => s.step === 'CHARGING_PAYMENT' && s.attempts >= 2,
        { what: 'the saga to be retrying the charge', timeoutMs: 20_000 },
      );
      // Two cancels at once, worded differently (an operator's and the customer's): the saga takes
      // the first it sees, and tells both callers which wording it used.
      const answers = await Promise.all([
        handle.executeUpdate(cancelUpdate, { args: [{ reason: 'changed my mind' }] }),
        handle.executeUpdate(cancelUpdate, { args: [{ reason: 'suspected fraud' }] }),
      ]);
      const result = await handle.result();
      expect(result).toMatchObject({ orderId: order.orderId, status: 'CANCELLED' });
      expect(['changed my mind', 'suspected fraud']).toContain(result.reason);
      expect(answers).toEqual([
        { accepted: true, status: 'CANCELLED', reason: result.reason },
        { accepted: true, status: 'CANCELLED', reason: result.reason },
      ]);
      const state = await handle.query(statusQuery);
      expect(state).toMatchObject({ status: 'CANCELLED', cancelRequested: true, compensationFailures: [] });
      const description = await handle.describe();
      expect(description.typedSearchAttributes.get(SEARCH_ATTRIBUTES.OrderStatus)).toBe('CANCELLED');
    });

    expect(await paymentStatus(h.db.pool, order.orderId)).toBeUndefined();
    await expectCancelledWithStockBack(order.orderId, sku);
  });

  test('recorded on the order, never delivered, and the payment deadline passes before any charge attempt asks: the order ends CANCELLED, not PAYMENT_FAILED', async () => {
    // As in a run reset after its deadline: the timer fires before a retry reaches the order. Here
    // the first attempt fails transiently while the API records the cancel (its update lost), and
    // the deadline is shorter than the 1 s backoff before the first retry.
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 2 }] });
    const gateway = downRecordingCancel(() => recordCancel(order.orderId));
    const worker = await h.worker({ gateway });

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order, 500));
      expect(await handle.result()).toEqual({
        orderId: order.orderId,
        status: 'CANCELLED',
        reason: cancelWording('changed_mind'),
      });
      const description = await handle.describe();
      expect(description.typedSearchAttributes.get(SEARCH_ATTRIBUTES.OrderStatus)).toBe('CANCELLED');
    });

    expect(gateway.calls.charge).toEqual(['attempt']);
    expect(await paymentStatus(h.db.pool, order.orderId)).toBeUndefined();
    await expectCancelledWithStockBack(order.orderId, sku);
  });

  test('recorded before the deadline was decided, asked after it while failPayment decides: the cancel is accepted and answered CANCELLED', async () => {
    // The API records the cancel on the order, then asks the saga; the deadline is decided between
    // the two. failPayment refuses for that cancel, so the order ends CANCELLED: the answer must say
    // so, not "too late" (the saga's step is already COMPENSATING when the update arrives).
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 2 }] });
    const gateway = downRecordingCancel(() => recordCancelRequest(h.db.pool, order.orderId)); // the API's first step
    const held = holdFailPayment(h, gateway);
    const worker = await h.worker({ gateway, activityOverrides: held.activityOverrides });

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order, 500));
      // The API's update arrives while failPayment decides, after the deadline was decided.
      const reason = cancelWording('changed_mind');
      expect(await cancelWhileFailPaymentDecides(handle, held, reason)).toEqual({
        accepted: true,
        status: 'CANCELLED',
        reason,
      });
      expect(await handle.result()).toEqual({ orderId: order.orderId, status: 'CANCELLED', reason });
    });

    expect(await paymentStatus(h.db.pool, order.orderId)).toBeUndefined();
    await expectCancelledWithStockBack(order.orderId, sku);
  });

  test('asked after the deadline was decided and recorded after it too: accepted while failPayment decides, then answered "too late" once the payment failed', async () => {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 2 }] });
    const held = holdFailPayment(h, downGateway());
    const worker = await h.worker({ gateway: downGateway(), activityOverrides: held.activityOverrides });

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order, 500));
      const refused = await cancelWhileFailPaymentDecides(
        handle,
        held,
        cancelWording('changed_mind'),
        async ({ deadlineDecidedAt }) => {
          await recordCancelRequest(h.db.pool, order.orderId);
          // After the deadline's decision: stamped so, as the time-skipping server's workflow clock
          // runs ahead of the database's.
          await h.db.pool.query('update orders set cancel_requested_at = $2 where id = $1::uuid', [
            order.orderId,
            new Date(new Date(deadlineDecidedAt!).getTime() + 1_000),
          ]);
        },
      );
      expect(refused).toBeInstanceOf(WorkflowUpdateFailedError);
      expect((refused as WorkflowUpdateFailedError).cause?.message).toBe(
        'too late: the order ended PAYMENT_FAILED before the cancel took effect',
      );
      expect(await handle.result()).toMatchObject({
        status: 'PAYMENT_FAILED',
        reason: 'payment not captured within 500 ms',
      });
    });

    expect(await orderStatus(h.db.pool, order.orderId)).toBe('PAYMENT_FAILED');
    expect(await stockOf(h.db.pool, sku)).toBe(5);
    expect(await notificationKinds(h.db.pool, order.orderId)).toEqual(['payment-failed']);
  });

  test("accepted while the deadline's failPayment decides, which finds a capture whose answer was lost: the cancel still wins, refunded, in its own words", async () => {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 2 }] });
    const lost = captureThenLoseCompletion(h);
    const held = holdFailPayment(h, downGateway());
    const worker = await h.worker({
      activityOverrides: { ...lost.activityOverrides, ...held.activityOverrides },
    });

    const reason = cancelWording('changed_mind');
    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order, 500)); // the retry comes after the deadline
      expect(await cancelWhileFailPaymentDecides(handle, held, reason)).toEqual({
        accepted: true,
        status: 'CANCELLED',
        reason,
      });
      expect(await handle.result()).toEqual({ orderId: order.orderId, status: 'CANCELLED', reason });
    });

    expect(await paymentStatus(h.db.pool, order.orderId)).toBe('REFUNDED');
    expect(await stockOf(h.db.pool, sku)).toBe(5);
    expect(await orderStatus(h.db.pool, order.orderId)).toBe('CANCELLED');
    const { rows } = await h.db.pool.query<{ status_reason: string }>(
      'select status_reason from orders where id = $1::uuid',
      [order.orderId],
    );
    expect(rows[0]!.status_reason).toBe(reason);
  });

  test('recorded on the order but never delivered (the update lost to an outage): no charge, the order ends CANCELLED', async () => {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 2 }] });
    // The API recorded the customer's cancel, then could not reach the saga (it answered 503).
    expect(await recordCancelRequest(h.db.pool, order.orderId)).toMatchObject({ status: 'PENDING' });
    await recordCancelReason(h.db.pool, order.orderId, { code: 'changed_mind', note: 'x', confirmed: false });
    const gateway = ledgerGateway();
    const worker = await h.worker({ gateway });

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order));
      // In the recorded code's words, as the e-mail, the event and the status reason say.
      expect(await handle.result()).toEqual({
        orderId: order.orderId,
        status: 'CANCELLED',
        reason: cancelWording('changed_mind'),
      });
      expect(await handle.query(statusQuery)).toMatchObject({ status: 'CANCELLED', cancelRequested: true });
    });

    expect(gateway.calls.charge).toEqual([]);
    expect(await paymentStatus(h.db.pool, order.orderId)).toBeUndefined();
    await expectCancelledWithStockBack(order.orderId, sku);
    const { rows } = await h.db.pool.query<{ status_reason: string; cancel_code: string }>(
      'select status_reason, cancel_code from orders where id = $1::uuid',
      [order.orderId],
    );
    expect(rows[0]).toEqual({ status_reason: cancelWording('changed_mind'), cancel_code: 'changed_mind' });
  });

  test('after capture the update is rejected as too late, and the order completes', async () => {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 1 }] });
    // Hold the saga between capture and completion, so the cancel arrives exactly then.
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const { notifyCustomer } = createNotificationActivities({
      pool: h.db.pool,
      logger: createLogger('test', 'silent'),
    });
    const worker = await h.worker({
      activityOverrides: {
        notifyCustomer: async (args) => {
          await gate;
          return notifyCustomer(args);
        },
      },
    });

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order));
      await waitUntil(
        () => handle.query(statusQuery),
        (s) => s.status === 'PAID',
        { what: 'the payment to be captured', timeoutMs: 20_000 },
      );
      const rejected = await handle.executeUpdate(cancelUpdate, { args: [{}] }).catch((err: unknown) => err);
      expect(rejected).toBeInstanceOf(WorkflowUpdateFailedError);
      expect((rejected as WorkflowUpdateFailedError).cause?.message).toBe('too late: order is already paid');
      openGate();
      expect((await handle.result()).status).toBe('COMPLETED');
      expect((await handle.query(statusQuery)).cancelRequested).toBe(false);
    });

    expect(await orderStatus(h.db.pool, order.orderId)).toBe('COMPLETED');
    expect(await stockOf(h.db.pool, sku)).toBe(4);
    expect(await outboxTypes(h.db.pool, order.orderId)).toEqual([
      'inventory.reserved',
      'payment.completed',
      'order.completed',
    ]);
  });

  test('a workflow cancel (handle.cancel) also compensates, and the run ends Cancelled', async () => {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 5 }] });
    const gateway = downGateway();
    const worker = await h.worker({ gateway });

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order));
      // Once the charge is being retried (see 'accepted before capture' for why).
      await waitUntil(
        async () => ({ step: (await handle.query(statusQuery)).step, attempts: gateway.attempts }),
        (s) => s.step === 'CHARGING_PAYMENT' && s.attempts >= 2,
        { what: 'the saga to be retrying the charge', timeoutMs: 20_000 },
      );
      await handle.cancel();
      const failure = await handle.result().catch((err: unknown) => err);
      expect(failure).toBeInstanceOf(WorkflowFailedError);
      expect((failure as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
      expect((await handle.describe()).status.name).toBe('CANCELLED');
    });

    await expectCancelledWithStockBack(order.orderId, sku);
  });

  test("a workflow cancel while the deadline's failPayment yields to a recorded cancel: cancelled in that cancel's words", async () => {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 2 }] });
    const gateway = downRecordingCancel(() => recordCancel(order.orderId));
    const held = holdFailPayment(h, gateway);
    const worker = await h.worker({ gateway, activityOverrides: held.activityOverrides });

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order, 500));
      await held.asked;
      await handle.cancel(); // an operator's, say, while failPayment decides
      held.release();
      const failure = await handle.result().catch((err: unknown) => err);
      expect((failure as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
    });

    await expectCancelledWithStockBack(order.orderId, sku);
    const { rows } = await h.db.pool.query<{ status_reason: string }>(
      'select status_reason from orders where id = $1::uuid',
      [order.orderId],
    );
    expect(rows[0]!.status_reason).toBe(cancelWording('changed_mind'));
  });
});

describe('a failing compensation', () => {
  test('is recorded in the state, fails the workflow naming it, and is never swallowed', async () => {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, {
      items: [{ sku, qty: 2 }],
      customerId: `${h.config.PAYMENT_DECLINE_CUSTOMER_PREFIX}-C2-${Date.now()}`,
    });
    const worker = await h.worker({
      activityOverrides: {
        releaseInventory: async () => {
          throw ApplicationFailure.nonRetryable('simulated: inventory database unavailable');
        },
      },
    });

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order));
      const failure = await handle.result().catch((err: unknown) => err);
      expect(failure).toBeInstanceOf(WorkflowFailedError);
      const cause = (failure as WorkflowFailedError).cause as ApplicationFailure;
      expect(cause).toBeInstanceOf(ApplicationFailure);
      expect(cause.type).toBe('CompensationFailed');
      expect(cause.message).toContain('releaseInventory: simulated: inventory database unavailable');

      const state = await handle.query(statusQuery);
      expect(state.compensationFailures).toEqual([
        'releaseInventory: simulated: inventory database unavailable',
      ]);
      expect(state.status).toBe('PAYMENT_FAILED');
    });

    // The failure is visible, not papered over: stock is still reserved for an operator to act on.
    expect(await stockOf(h.db.pool, sku)).toBe(3);
    expect(await outboxTypes(h.db.pool, order.orderId)).toEqual(['inventory.reserved', 'payment.failed']);
  });

  test('still fails the run, naming it, when a workflow cancel arrives while it is failing', async () => {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, {
      items: [{ sku, qty: 1 }],
      customerId: `${h.config.PAYMENT_DECLINE_CUSTOMER_PREFIX}-C3-${Date.now()}`,
    });
    let entered!: () => void;
    let open!: () => void;
    const inCompensation = new Promise<void>((resolve) => (entered = resolve));
    const gate = new Promise<void>((resolve) => (open = resolve));
    const worker = await h.worker({
      activityOverrides: {
        releaseInventory: async () => {
          entered();
          await gate;
          throw ApplicationFailure.nonRetryable('simulated: stock service broken');
        },
      },
    });

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order));
      await inCompensation; // declined, compensating
      await handle.cancel(); // an operator cancels the run meanwhile
      await waitUntil(
        () => handle.query(statusQuery),
        (s) => s.cancelRequested || s.status === 'PAYMENT_FAILED',
        { what: 'the cancel', timeoutMs: 20_000 },
      );
      open();
      const failure = await handle.result().catch((err: unknown) => err);
      expect(failure).toBeInstanceOf(WorkflowFailedError);
      expect(((failure as WorkflowFailedError).cause as ApplicationFailure).type).toBe('CompensationFailed');
      expect((await handle.describe()).status.name).toBe('FAILED'); // not CANCELLED: the leak stays visible
    });
    expect(await stockOf(h.db.pool, sku)).toBe(4);
  });

  test('waits out a gateway that is down for many attempts, then gives the money back and cancels', async () => {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 2 }] });
    // The first charge attempt takes the money and its answer is lost; then the gateway is down,
    // for charges and for the first 12 voids (the old profile gave up after 10 attempts).
    const gateway = ledgerGateway('lose-answers');
    const charge = gateway.charge.bind(gateway);
    gateway.charge = async (request, signal) => {
      try {
        return await charge(request, signal);
      } finally {
        gateway.mode = 'down';
      }
    };
    let voidFailures = 12;
    const voidAtGateway = gateway.void.bind(gateway);
    gateway.void = async (request, signal) => {
      if (voidFailures-- > 0) throw new GatewayUnavailableError('simulated: gateway still down');
      gateway.mode = 'up';
      return voidAtGateway(request, signal);
    };
    const worker = await h.worker({ gateway });

    await worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order));
      await waitUntil(
        () => handle.query(statusQuery),
        (s) => s.step === 'CHARGING_PAYMENT',
        { what: 'the saga to be charging', timeoutMs: 20_000 },
      );
      // The retry after it (see 'accepted before capture' for why not the first attempt's end).
      await waitUntil(
        async () => gateway.calls.charge.length,
        (n) => n >= 2,
        { what: 'the first charge attempt and a retry', timeoutMs: 20_000 },
      );
      const answer = handle.executeUpdate(cancelUpdate, { args: [{ reason: 'changed my mind' }] });
      await waitUntil(
        () => handle.query(statusQuery),
        (s) => s.cancelRequested,
        { what: 'the cancel', timeoutMs: 20_000 },
      );
      // Waiting on the result lets the test server skip the compensation's retry backoff.
      expect(await handle.result()).toMatchObject({ status: 'CANCELLED' });
      expect(await answer).toEqual({ accepted: true, status: 'CANCELLED', reason: 'changed my mind' });
    });
    expect(voidFailures).toBeLessThan(0);
    expect(gateway.held.size).toBe(0);
    expect(await paymentStatus(h.db.pool, order.orderId)).toBe('REFUNDED');
    expect(await orderStatus(h.db.pool, order.orderId)).toBe('CANCELLED');
    expect(await stockOf(h.db.pool, sku)).toBe(5);
  });
});
