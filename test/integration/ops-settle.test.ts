/**
 * `orders settle` on the real servers: an order that ended without a sale while its run still held
 * money or stock, no run left to give them back (terminated by hand while its compensation waited
 * out a gateway outage; or forgotten by Temporal altogether), is settled by a workflow of its own
 * that runs the saga's compensations: the charge voided or refunded at the gateway, the stock put
 * back, each with its event. Then the order may be retried. Plus what it refuses, and that two
 * settlements at once start one.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../lib/logger.js';
import { reconcileOrders } from '../../ops/reconcile.js';
import { resetOrders } from '../../ops/reset.js';
import { retryOrders } from '../../ops/retry.js';
import { settleOrders } from '../../ops/settle.js';
import { UsageError } from '../../ops/result.js';
import { heldStockStats } from '../../db/orders.js';
import { orderWorkflowId, type SettleOrderResult } from '../../workflows/contract.js';
import { waitFor } from '../helpers/amqp.js';
import { createProduct } from '../helpers/db.js';
import { startSystem, type TestSystem } from '../helpers/system.js';
import { GatewayUnavailableError, type PaymentGateway } from '../../activities/payment-gateway.js';
import { ledgerGateway } from '../workflow/fixtures/gateways.js';
import { createHeldOrder, createOrder, stockOf } from '../workflow/fixtures/orders.js';

const ledger = ledgerGateway('up');
/** The ledger, but its voids and refunds fail (not reached) while `undoDown`: a compensation waits. */
let undoDown = false;
const gateway: PaymentGateway = {
  charge: (request, signal) => ledger.charge(request, signal),
  void: async (request, signal) => {
    if (undoDown) throw new GatewayUnavailableError('simulated: voids and refunds are down');
    return ledger.void(request, signal);
  },
  refund: async (request, signal) => {
    if (undoDown) throw new GatewayUnavailableError('simulated: voids and refunds are down');
    return ledger.refund(request, signal);
  },
};

const logger = createLogger('ops-settle', 'silent');
let system: TestSystem;

beforeAll(async () => {
  system = await startSystem({ PAYMENT_DEADLINE_MS: '3000' }, { gateway });
});
afterAll(async () => {
  await system?.stop();
});
afterEach(() => {
  ledger.mode = 'up';
  undoDown = false;
});

const deps = () => ({ pool: system.db.pool, client: system.temporal, logger, config: system.config });
const settle = (orderIds: string[], extra: { dryRun?: boolean; waitMs?: number } = {}) =>
  settleOrders(deps(), {
    orderIds,
    reason: 'run stopped during the gateway outage',
    waitMs: 20_000,
    ...extra,
  });

async function rowsOf(orderId: string) {
  const { rows } = await system.db.pool.query<{
    status: string;
    payment: string | null;
    stock_held: boolean;
  }>(
    `select o.status, p.status as payment,
            (o.stock_reserved_at is not null and o.stock_released_at is null) as stock_held
       from orders o left join payments p on p.order_id = o.id and p.run = o.run
      where o.id = $1::uuid`,
    [orderId],
  );
  return rows[0];
}

async function outboxTypes(orderId: string): Promise<string[]> {
  const { rows } = await system.db.pool.query<{ type: string }>(
    'select type from event_outbox where order_id = $1::uuid order by id',
    [orderId],
  );
  return rows.map((r) => r.type);
}

/**
 * The case settle is for: the gateway captures but its answers are lost until the payment deadline
 * passes (PAYMENT_FAILED, the charge in doubt, the stock held); voids are down, so the compensation
 * waits the outage out; an operator terminates the run. Voids stay down (`undoDown`).
 */
async function stoppedWhileGivingBack(customerId: string, qty: number): Promise<{ id: string; sku: string }> {
  ledger.mode = 'lose-answers';
  undoDown = true;
  const sku = await createProduct(system.db.pool, { stock: 5, price: '8.00' });
  const placed = await system.placeOrder({
    customer_id: customerId,
    email: 's@example.com',
    items: [{ sku, qty }],
  });
  const id = placed.body.id;
  expect((await system.waitForFinal(id)).status).toBe('PAYMENT_FAILED');
  ledger.mode = 'up';
  const saga = system.temporal.workflow.getHandle(orderWorkflowId(id));
  await waitFor(
    async () => ((await saga.describe()).raw.pendingActivities?.[0]?.attempt ?? 0) > 1 || undefined,
    { what: 'the compensation to be retrying' },
  );
  await saga.terminate('stopped by hand during the outage');
  return { id, sku };
}

describe('orders settle', () => {
  it('refunds the capture whose answer was lost and puts the stock back, for a run terminated while its compensation waited; then the order runs again', async () => {
    const { id, sku } = await stoppedWhileGivingBack('C-SETTLE', 2);
    // The bridge's gauge counts it (AcmeOrdersHoldingStock), until it is settled.
    const heldBefore = await heldStockStats(system.db.pool);
    expect(heldBefore.orders).toBeGreaterThanOrEqual(1);
    expect(await rowsOf(id)).toEqual({ status: 'PAYMENT_FAILED', payment: 'CHARGING', stock_held: true });
    expect(await stockOf(system.db.pool, sku)).toBe(3);
    const stalled = await reconcileOrders(
      { pool: system.db.pool, client: system.temporal, logger },
      { olderThanMs: 0 },
    );
    const listed = stalled.items.find((i) => i.id === id);
    expect(listed).toMatchObject({ ok: false, details: { cause: 'money-held' } });
    expect(listed!.reason).toContain(`orders settle ${id}`);

    // Still down: the settlement starts and waits the outage out, as the saga's compensation did.
    const first = await settle([id], { waitMs: 1_000 });
    expect(first).toMatchObject({
      ok: true,
      items: [{ id, ok: true, outcome: 'settling', details: { run: 1 } }],
    });
    // Meanwhile nothing else starts: a second settlement (told the first is running, as after an
    // answer lost to a timeout), and a retry, see its run open.
    expect(await settle([id])).toMatchObject({
      ok: false,
      items: [
        {
          ok: false,
          outcome: 'refused',
          reason: expect.stringMatching(/a settlement of this order is already running/),
        },
      ],
    });
    const retryWhileOpen = await retryOrders(
      { pool: system.db.pool, client: system.temporal, logger },
      { selection: { orderIds: [id] }, reason: 'too early' },
    );
    expect(retryWhileOpen.items[0]).toMatchObject({ ok: false, outcome: 'refused' });

    undoDown = false;
    const settlement = system.temporal.workflow.getHandle<() => Promise<SettleOrderResult>>(
      orderWorkflowId(id),
      String(first.items[0]!.details!.runId),
    );
    expect(await settlement.result()).toEqual({
      orderId: id,
      run: 1,
      money: 'refunded',
      stockReleased: true,
      skipped: [],
    });
    expect(await rowsOf(id)).toEqual({ status: 'PAYMENT_FAILED', payment: 'REFUNDED', stock_held: false });
    expect(await stockOf(system.db.pool, sku)).toBe(5);
    expect((await heldStockStats(system.db.pool)).orders).toBe(heldBefore.orders - 1);
    expect(ledger.held.size).toBe(0);
    expect(await outboxTypes(id)).toEqual(expect.arrayContaining(['payment.refunded', 'inventory.released']));
    const after = await reconcileOrders(
      { pool: system.db.pool, client: system.temporal, logger },
      { olderThanMs: 0 },
    );
    expect(after.items.filter((i) => i.id === id)).toEqual([]);
    // Settled again: nothing held, nothing to do.
    expect((await settle([id])).items[0]).toMatchObject({
      ok: false,
      outcome: 'refused',
      reason: expect.stringMatching(/nothing to settle/),
    });
    // The order's latest execution is the settlement: a reset refuses it rather than re-running it.
    const reset = await resetOrders(
      { pool: system.db.pool, client: system.temporal, logger },
      { selection: { orderIds: [id] }, reason: 'no', closed: true },
    );
    expect(reset.items[0]).toMatchObject({ ok: false, outcome: 'refused', details: { type: 'settleOrder' } });

    // A bulk retry selects it by query too: the settlement stands for no run of its own.
    const byQuery = await waitFor(
      async () => {
        const found = await retryOrders(
          { pool: system.db.pool, client: system.temporal, logger },
          { selection: { query: `OrderId = "${id}"` }, reason: 'gateway back', dryRun: true },
        );
        return found.items.length > 0 ? found : undefined;
      },
      { what: 'visibility to list the saga run' },
    );
    expect(byQuery.items).toMatchObject([{ id, ok: true, outcome: 'would-retry' }]);

    // And the order runs again, as run 2, charged once.
    const retried = await retryOrders(
      { pool: system.db.pool, client: system.temporal, logger },
      { selection: { orderIds: [id] }, reason: 'gateway back' },
    );
    expect(retried).toMatchObject({ ok: true, items: [{ outcome: 'retried', details: { run: 2 } }] });
    expect((await system.waitForFinal(id)).status).toBe('COMPLETED');
    expect([...ledger.held.keys()]).toEqual([`${id}:run-2`]);
    expect(await stockOf(system.db.pool, sku)).toBe(3);
  });

  it('settles a cancel stopped midway (the order RESERVED, its run undone) and finishes it: CANCELLED, the customer told', async () => {
    // The charge captures but its answers are lost, so it retries; the customer cancels; the saga
    // takes the cancel and starts giving back, but voids are down; an operator terminates the run.
    // The order never reached CANCELLED: RESERVED, money in doubt, stock held, its run undone.
    ledger.mode = 'lose-answers';
    undoDown = true;
    const sku = await createProduct(system.db.pool, { stock: 5 });
    const placed = await system.placeOrder({
      customer_id: 'C-SETTLE-CANCEL',
      email: 'c@example.com',
      items: [{ sku, qty: 1 }],
    });
    const id = placed.body.id;
    const saga = system.temporal.workflow.getHandle(orderWorkflowId(id));
    const pending = async (activity: string) => {
      const activities = await saga.describe().then(
        (d) => d.raw.pendingActivities ?? [],
        () => [], // not started yet: the bridge starts it in a moment
      );
      return activities.some((a) => a.activityType?.name === activity && (a.attempt ?? 0) > 1) || undefined;
    };
    await waitFor(() => pending('chargePayment'), { what: 'the charge to be retrying' });
    const cancel = system.app.request(`/orders/${id}/cancel`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code: 'changed_mind' }),
    });
    await waitFor(() => pending('refundPayment'), { what: 'the compensation to be retrying' });
    ledger.mode = 'up';
    await saga.terminate('stopped by hand during the outage');
    await cancel;
    expect(await rowsOf(id)).toEqual({ status: 'RESERVED', payment: 'CHARGING', stock_held: true });
    // Reconcile lists it as holding money, and --fix leaves it alone: only a settlement gives back.
    const found = await reconcileOrders(
      { pool: system.db.pool, client: system.temporal, logger },
      { olderThanMs: 0, fix: true },
    );
    expect(found.items.find((i) => i.id === id)).toMatchObject({
      ok: false,
      outcome: 'refused',
      details: { cause: 'money-held', status: 'RESERVED' },
    });

    // Asking to cancel again: the run that took the cancel is gone, money is held: a 409 saying so.
    const again = await system.app.request(`/orders/${id}/cancel`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code: 'changed_mind' }),
    });
    expect(again.status).toBe(409);
    expect(JSON.stringify(await again.json())).toContain('orders settle');

    undoDown = false;
    // The settlement gives back the money and the stock, then finishes the cancel the run had taken.
    const settled = await settle([id]);
    expect(settled.items[0]).toMatchObject({
      ok: true,
      outcome: 'settled',
      details: { money: 'refunded', stockReleased: true, cancelled: true },
    });
    expect(await rowsOf(id)).toEqual({ status: 'CANCELLED', payment: 'REFUNDED', stock_held: false });
    expect(await stockOf(system.db.pool, sku)).toBe(5);
    expect(ledger.held.has(id)).toBe(false); // the customer has their money back
    const types = await outboxTypes(id);
    expect(types.slice(types.indexOf('payment.refunded'))).toEqual([
      'payment.refunded',
      'inventory.released',
      'order.cancelled',
    ]);
    const { rows } = await system.db.pool.query('select kind from notifications where order_id = $1::uuid', [
      id,
    ]);
    expect(rows).toEqual([{ kind: 'order-cancelled' }]);
    // In the customer's words: the API kept their code though the saga never answered the cancel.
    const reason = await system.db.pool.query('select status_reason from orders where id = $1::uuid', [id]);
    expect(reason.rows).toEqual([{ status_reason: 'cancelled at your request (changed your mind)' }]);
  });

  it('while a settlement runs, a cancel is refused with the reason (409) and a retry waits for it', async () => {
    // A retried order (run 2) whose run failed and undid itself midway: RESERVED, stock and a charge
    // in doubt held. Voids are down, so the settlement waits the outage out.
    undoDown = true;
    const sku = await createProduct(system.db.pool, { stock: 3 });
    const order = await createHeldOrder(system.db.pool, {
      sku,
      status: 'PAYMENT_FAILED',
      payment: 'CHARGING',
    });
    await system.db.pool.query(
      `update orders set status = 'RESERVED', run = 2, started_run = 2, undo_run = 2, stock_run = 2 where id = $1::uuid`,
      [order.orderId],
    );
    await system.db.pool.query(
      `update payments set run = 2, charge_key = $1::text || ':run-2' where order_id = $1::uuid`,
      [order.orderId],
    );
    const started = await settle([order.orderId], { waitMs: 0 });
    expect(started.items[0]).toMatchObject({ ok: true, outcome: 'started' });

    const cancel = await system.app.request(`/orders/${order.orderId}/cancel`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code: 'changed_mind' }),
    });
    expect(cancel.status).toBe(409);
    expect(JSON.stringify(await cancel.json())).toContain('An operator is settling this order');
    const retry = await system.app.request(`/orders/${order.orderId}/retry`, { method: 'POST' });
    expect(retry.status).toBe(409);
    expect(JSON.stringify(await retry.json())).toContain('an operator is settling this order');

    undoDown = false;
    const settlement = system.temporal.workflow.getHandle<() => Promise<SettleOrderResult>>(
      orderWorkflowId(order.orderId),
      String(started.items[0]!.details!.runId),
    );
    const result = await settlement.result();
    expect(result).toMatchObject({ money: 'voided', stockReleased: true });
    expect(result.cancelled).toBeUndefined(); // nobody had asked to cancel when it started
    expect(await stockOf(system.db.pool, sku)).toBe(3);
    // Asked again now, the cancel ends the order: nothing is held, and no run is going.
    const again = await system.app.request(`/orders/${order.orderId}/cancel`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code: 'changed_mind' }),
    });
    expect(again.status).toBe(200);
    expect((await rowsOf(order.orderId))?.status).toBe('CANCELLED');
  });

  it('finishes the cancel of a PAID order whose refund was stopped (a cancel that raced the charge)', async () => {
    const sku = await createProduct(system.db.pool, { stock: 2 });
    const order = await createHeldOrder(system.db.pool, { sku, status: 'PAID', payment: 'CAPTURED' });
    await system.db.pool.query(
      `update orders set undo_run = 1, cancel_requested_at = now(), cancel_code = 'changed_mind' where id = $1::uuid`,
      [order.orderId],
    );
    const settled = await settle([order.orderId]);
    expect(settled.items[0]).toMatchObject({
      ok: true,
      outcome: 'settled',
      details: { money: 'refunded', stockReleased: true, cancelled: true },
    });
    expect(await rowsOf(order.orderId)).toEqual({
      status: 'CANCELLED',
      payment: 'REFUNDED',
      stock_held: false,
    });
    expect(await stockOf(system.db.pool, sku)).toBe(2);
    const { rows } = await system.db.pool.query('select status_reason from orders where id = $1::uuid', [
      order.orderId,
    ]);
    expect(rows).toEqual([{ status_reason: 'cancelled at your request (changed your mind)' }]);
  });

  it('a reset prepared before a settlement started refuses once it gets the row, instead of terminating the settlement', async () => {
    const { id, sku } = await stoppedWhileGivingBack('C-SETTLE-RESET', 1);
    undoDown = false;

    // The settlement queues on the order's row first; the reset describes the run (the saga's,
    // terminated), then queues behind it.
    const lockWaiters = async () =>
      (
        await system.db.pool.query<{ n: number }>(
          "select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()",
        )
      ).rows[0]!.n;
    const holder = await system.db.pool.connect();
    try {
      await holder.query('begin');
      await holder.query('select 1 from orders where id = $1::uuid for update', [id]);
      const settling = settle([id], { waitMs: 0 });
      await waitFor(async () => (await lockWaiters()) >= 1 || undefined, { what: 'the settlement to wait' });
      const resetting = resetOrders(
        { pool: system.db.pool, client: system.temporal, logger },
        { selection: { orderIds: [id] }, reason: 'gateway fixed', closed: true },
      );
      await waitFor(async () => (await lockWaiters()) >= 2 || undefined, { what: 'the reset to wait' });
      await holder.query('commit');
      const [settled, reset] = await Promise.all([settling, resetting]);
      expect(settled.items[0]).toMatchObject({ ok: true, outcome: 'started' });
      expect(reset.items[0]).toMatchObject({
        ok: false,
        outcome: 'refused',
        reason: expect.stringMatching(/latest execution changed .*settleOrder/),
      });
    } finally {
      holder.release();
    }
    const settlement = system.temporal.workflow.getHandle<() => Promise<SettleOrderResult>>(
      orderWorkflowId(id),
    );
    expect(await settlement.result()).toMatchObject({ money: 'refunded', stockReleased: true });
    expect(await stockOf(system.db.pool, sku)).toBe(5);
  });

  it('refunds a capture and releases the stock of an order Temporal no longer knows, with their events', async () => {
    // Long after retention: no workflow of the order is left, the capture and the stock still held.
    const sku = await createProduct(system.db.pool, { stock: 4 });
    const order = await createOrder(system.db.pool, { items: [{ sku, qty: 1 }], status: 'CANCELLED' });
    await system.db.pool.query(
      `update orders set stock_reserved_at = now(), stock_run = 1 where id = $1::uuid`,
      [order.orderId],
    );
    await system.db.pool.query(`update products set stock_qty = stock_qty - 1 where sku = $1`, [sku]);
    await system.db.pool.query(
      `insert into payments (order_id, run, amount, currency, charge_key, status, reference)
       values ($1::uuid, 1, 10.00, 'USD', $1::text, 'CAPTURED', 'ledger_' || $1::text)`,
      [order.orderId],
    );

    const dry = await settle([order.orderId], { dryRun: true });
    expect(dry).toMatchObject({
      ok: true,
      items: [
        {
          outcome: 'would-settle',
          details: { run: 1, stockHeldBy: 1, heldPayments: [{ run: 1, status: 'CAPTURED' }] },
        },
      ],
    });
    expect((await rowsOf(order.orderId))?.payment).toBe('CAPTURED'); // the dry run changed nothing

    const settled = await settle([order.orderId]);
    expect(settled).toMatchObject({
      ok: true,
      items: [{ outcome: 'settled', details: { money: 'refunded', stockReleased: true, skipped: [] } }],
    });
    expect(await rowsOf(order.orderId)).toEqual({
      status: 'CANCELLED',
      payment: 'REFUNDED',
      stock_held: false,
    });
    expect(await stockOf(system.db.pool, sku)).toBe(4);
    expect(ledger.calls.refund).toContain(`refund-${order.orderId}`);
    expect(await outboxTypes(order.orderId)).toEqual(['payment.refunded', 'inventory.released']);
  });

  it('a run stopped by hand mid-charge and then forgotten by Temporal: refused with the advice, settled with --forgotten-run, then retried to completion', async () => {
    // Terminated while its charge was in doubt (nothing began to give back), long ago: no workflow of
    // the order is left. Retry refuses it (money may be held), reset finds no run: only a settlement,
    // on the operator's word, can end it.
    const sku = await createProduct(system.db.pool, { stock: 4, price: '10.00' });
    const order = await createOrder(system.db.pool, { items: [{ sku, qty: 1 }], status: 'RESERVED' });
    const id = order.orderId;
    await system.db.pool.query(
      `update orders set stock_reserved_at = now(), stock_run = 1, started_run = 1 where id = $1::uuid`,
      [id],
    );
    await system.db.pool.query(`update products set stock_qty = stock_qty - 1 where sku = $1`, [sku]);
    await system.db.pool.query(
      `insert into payments (order_id, run, amount, currency, charge_key, status, attempts_in_doubt)
       values ($1::uuid, 1, 10.00, 'USD', $1::text, 'CHARGING', 1)`,
      [id],
    );
    const retried = await retryOrders(
      { pool: system.db.pool, client: system.temporal, logger },
      { selection: { orderIds: [id] }, reason: 'too early' },
    );
    expect(retried.items[0]).toMatchObject({ ok: false, outcome: 'refused' });

    const refused = await settle([id]);
    expect(refused.items[0]).toMatchObject({
      ok: false,
      outcome: 'refused',
      reason: expect.stringMatching(/Temporal has no run of it .* settle it with --forgotten-run/),
    });
    expect(await rowsOf(id)).toEqual({ status: 'RESERVED', payment: 'CHARGING', stock_held: true });

    const settled = await settleOrders(deps(), {
      orderIds: [id],
      reason: 'run terminated during the outage of 3 May, retention passed',
      forgottenRun: true,
      waitMs: 20_000,
    });
    expect(settled.items[0]).toMatchObject({
      ok: true,
      outcome: 'settled',
      reason: expect.stringContaining(`orders retry ${id}`),
      details: { money: 'voided', stockReleased: true },
    });
    expect(await rowsOf(id)).toEqual({ status: 'RESERVED', payment: 'VOIDED', stock_held: false });
    expect(await stockOf(system.db.pool, sku)).toBe(4);
    expect(ledger.calls.void).toContain(`void-${id}`);

    // Holding nothing, its run undone: a retry runs it again, charged once under run 2's key.
    const again = await retryOrders(
      { pool: system.db.pool, client: system.temporal, logger },
      { selection: { orderIds: [id] }, reason: 'settled; the customer still wants it' },
    );
    expect(again.items[0]).toMatchObject({ ok: true });
    expect((await system.waitForFinal(id)).status).toBe('COMPLETED');
    expect(await stockOf(system.db.pool, sku)).toBe(3);
    expect(ledger.calls.charge.filter((key) => key.startsWith(id))).toEqual([`${id}:run-2`]);
  });

  it('two settlements of one order at once: one starts, the other is refused', async () => {
    const sku = await createProduct(system.db.pool, { stock: 3 });
    const order = await createOrder(system.db.pool, { items: [{ sku, qty: 1 }], status: 'OUT_OF_STOCK' });
    await system.db.pool.query(
      `update orders set stock_reserved_at = now(), stock_run = 1 where id = $1::uuid`,
      [order.orderId],
    );
    const results = await Promise.all([settle([order.orderId]), settle([order.orderId])]);
    const outcomes = results.map((r) => r.items[0]!.outcome).sort();
    expect(outcomes).toEqual(['refused', 'settled']);
    expect(await stockOf(system.db.pool, sku)).toBe(4); // given back once
    expect((await outboxTypes(order.orderId)).filter((t) => t === 'inventory.released')).toHaveLength(1);
  });

  it('refuses orders that have not ended, that completed, that hold nothing, or do not exist', async () => {
    const sku = await createProduct(system.db.pool, { stock: 9 });
    const cases = [
      ['PENDING', /never began to give back/],
      ['COMPLETED', /its sale stands/],
      ['PAYMENT_FAILED', /nothing to settle/],
    ] as const;
    for (const [status, reason] of cases) {
      const order = await createOrder(system.db.pool, { items: [{ sku, qty: 1 }], status });
      expect((await settle([order.orderId])).items[0]).toMatchObject({
        ok: false,
        outcome: 'refused',
        reason: expect.stringMatching(reason),
      });
    }
    const missing = '00000000-0000-4000-8000-000000000000';
    expect((await settle([missing])).items[0]).toMatchObject({ ok: false, outcome: 'not-found' });
    await expect(settle(['not-an-id'])).rejects.toThrow(UsageError);
    await expect(settleOrders(deps(), { orderIds: [missing], reason: ' ' })).rejects.toThrow(
      /--reason is empty/,
    );
  });
});
