/**
 * Cancelling through HTTP against the real saga (no stand-in): the gateway of this system fails
 * every attempt transiently, so each saga sits in "charging" (retrying until its deadline) with its
 * stock reserved, which is when a customer's cancel must win and undo the reservation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderWorkflowId } from '../../workflows/contract.js';
import { cancelWording } from '../../domain/cancel.js';
import { bearer } from '../helpers/auth.js';
import { waitFor } from '../helpers/amqp.js';
import { createProduct } from '../helpers/db.js';
import { startSystem, type TestSystem } from '../helpers/system.js';
import { stockOf } from '../workflow/fixtures/orders.js';

let system: TestSystem;
beforeAll(async () => {
  system = await startSystem({ PAYMENT_TRANSIENT_FAILURE_RATE: '1' });
});
afterAll(async () => {
  await system?.stop();
});

/** As the operator (system.app), or as `customerId` when given; a string is the seed-era `reason`. */
async function cancel(id: string, body?: string | Record<string, unknown>, customerId?: string) {
  const res = await system.app.request(`/orders/${id}/cancel`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(customerId ? bearer(await system.auth.customerToken(customerId)) : {}),
    },
    body: JSON.stringify(typeof body === 'string' ? { reason: body } : (body ?? {})),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('cancel through the API, against the running saga', () => {
  it('before capture: the saga compensates, stock comes back, the customer is told', async () => {
    const sku = await createProduct(system.db.pool, { stock: 3 });
    const placed = await system.placeOrder({
      customer_id: 'C500',
      email: 'c500@example.com',
      items: [{ sku, qty: 2 }],
    });
    await waitFor(async () => (await system.getOrder(placed.body.id)).status === 'RESERVED', {
      what: 'the reservation',
    });
    expect(await stockOf(system.db.pool, sku)).toBe(1);

    // The customer's own cancel, with a note meant for the record only.
    const note = 'NOTE-FOR-THE-RECORD call me at +1 555 0100';
    const answer = await cancel(placed.body.id, { code: 'changed_mind', note }, 'C500');
    expect(answer).toEqual({
      status: 200,
      body: {
        id: placed.body.id,
        status: 'CANCELLED',
        via: 'workflow',
        reason: cancelWording('changed_mind'),
      },
    });

    const order = await system.getOrder(placed.body.id);
    expect(order.status).toBe('CANCELLED');
    expect(await stockOf(system.db.pool, sku)).toBe(3);
    expect(order.events.map((e) => e.type)).toEqual([
      'order.placed',
      'inventory.reserved',
      'inventory.released',
      'order.cancelled',
    ]);
    expect(order.notifications.map((n) => n.kind)).toEqual(['order-cancelled']);
    // The e-mail says the code's wording; the note is stored, and in no e-mail or event (the saga
    // never receives it: api-cancel.test.ts checks what the cancel Update carries).
    const { rows: mail } = await system.db.pool.query<{ body: string }>(
      'select body from notifications where order_id = $1',
      [placed.body.id],
    );
    expect(mail[0]!.body).toContain(cancelWording('changed_mind'));
    expect(mail[0]!.body).not.toContain('NOTE-FOR-THE-RECORD');
    const { rows: stored } = await system.db.pool.query(
      'select cancel_code, cancel_note from orders where id = $1',
      [placed.body.id],
    );
    expect(stored).toEqual([{ cancel_code: 'changed_mind', cancel_note: note }]);
    const { rows: events } = await system.db.pool.query<{ payload: unknown }>(
      'select payload from event_outbox where order_id = $1',
      [placed.body.id],
    );
    expect(JSON.stringify(events)).not.toContain('NOTE-FOR-THE-RECORD');
    const run = await system.temporal.workflow.getHandle(orderWorkflowId(placed.body.id)).describe();
    expect(run.status.name).toBe('COMPLETED'); // the saga ended normally, at CANCELLED

    // Asking again (its answer lost) is the same success, never a second compensation.
    const again = await cancel(placed.body.id);
    expect(again.status).toBe(200);
    expect(again.body).toEqual({
      id: placed.body.id,
      status: 'CANCELLED',
      via: 'already',
      reason: cancelWording('changed_mind'),
    });
    expect(await stockOf(system.db.pool, sku)).toBe(3);
  });

  it('after the order ended: 409 naming the status, nothing changes', async () => {
    const placed = await system.placeOrder({
      customer_id: 'C600',
      email: 'c600@example.com',
      items: [{ sku: 'TSHIRT-GRY-S', qty: 999 }],
    });
    const order = await system.waitForFinal(placed.body.id);
    expect(order.status).toBe('OUT_OF_STOCK');
    const answer = await cancel(placed.body.id);
    expect(answer.status).toBe(409);
    expect(String((answer.body.error as { message: string }).message)).toMatch(/OUT_OF_STOCK/);
    expect((await system.getOrder(placed.body.id)).status).toBe('OUT_OF_STOCK');
  });

  it('a cancel whose text PostgreSQL cannot store is a 400; the order is untouched and still ends', async () => {
    const sku = await createProduct(system.db.pool, { stock: 3 });
    const placed = await system.placeOrder({
      customer_id: 'C700',
      email: 'c700@example.com',
      items: [{ sku, qty: 1 }],
    });
    await waitFor(async () => (await system.getOrder(placed.body.id)).status === 'RESERVED', {
      what: 'the reservation',
    });
    for (const reason of ['stop\u0000now', 'lone \ud800', 'esc\u001b[2J', 'line\nbreak']) {
      const refused = await cancel(placed.body.id, reason);
      expect(refused.status).toBe(400);
      expect(refused.body.error).toMatchObject({ code: 'validation_failed', fields: [{ path: 'reason' }] });
    }
    expect((await system.getOrder(placed.body.id)).status).toBe('RESERVED');

    // Nothing is stuck: an ordinary cancel still ends the order, with its stock back.
    expect((await cancel(placed.body.id, 'changed my mind')).status).toBe(200);
    expect((await system.waitForFinal(placed.body.id)).status).toBe('CANCELLED');
    expect(await stockOf(system.db.pool, sku)).toBe(3);
  });
});
