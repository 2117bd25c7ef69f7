/**
 * POST /orders/:id/cancel against a real PostgreSQL and the Temporal dev server (127.0.0.1:7233).
 *
 * Covered here: the direct cancel of an order whose saga has not started (no workflow), 404/409,
 * a workflow that exists but answers nobody (no worker: the deadline turns into a 503 and nothing
 * changes), and the saga's answers (accepted / rejected) through a stand-in for the Temporal
 * gateway. The real saga's accept/reject is exercised by the end-to-end tests.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../api/app.js';
import type { AppDeps } from '../../api/env.js';
import {
  createTemporalOrderWorkflows,
  type OrderWorkflows,
  type WorkflowCancelOutcome,
} from '../../api/order-workflows.js';
import type { OrderView } from '../../api/schemas.js';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { connectTemporal } from '../../lib/temporal.js';
import type { OrderStatus } from '../../domain/order.js';
import { DEFAULT_CANCEL_CODE, cancelWording } from '../../domain/cancel.js';
import { retryOrder } from '../../db/order-retries.js';
import { WORKFLOW_TYPE, orderWorkflowId } from '../../workflows/contract.js';
import { asCaller, testAuth, type TestAuth } from '../helpers/auth.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
let temporal: Client;
let auth: TestAuth;
/** Every request here is the customer's own, on its own orders. */
let customerToken: string;
const startedWorkflows: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  temporal = await connectTemporal(loadConfig());
  auth = await testAuth();
  customerToken = await auth.customerToken('C-CANCEL');
});
afterAll(async () => {
  for (const id of startedWorkflows)
    await temporal.workflow
      .getHandle(id)
      .terminate('test cleanup')
      .catch(() => {});
  await temporal?.connection.close();
  await db?.drop();
});

function appWith(workflows: OrderWorkflows) {
  const deps: AppDeps = {
    pool: db.pool,
    logger: createLogger('api-test', 'silent'),
    workflows,
    config: {
      TEMPORAL_UI_URL: 'http://localhost:8233',
      TEMPORAL_NAMESPACE: 'default',
      IDEMPOTENCY_KEY_RETENTION_HOURS: 24,
      EVENT_MAX_AMOUNT: 10_000_000,
    },
    checks: {},
    authenticator: auth.authenticator,
  };
  return asCaller(createApp(deps), customerToken);
}

const realApp = () => appWith(createTemporalOrderWorkflows(temporal, { timeoutMs: 1_500 }));

/** A stand-in for Temporal that answers from a script and records what it was asked. */
function scripted(...answers: WorkflowCancelOutcome[]) {
  const calls: Array<{ orderId: string; reason: string }> = [];
  const workflows: OrderWorkflows = {
    cancel: async (orderId, reason) => {
      calls.push({ orderId, reason });
      return answers.shift() ?? { kind: 'not_running' };
    },
    latestRun: () => Promise.reject(new Error('not used here')),
  };
  return { workflows, calls };
}

async function placeOrder(app = realApp()): Promise<string> {
  const res = await app.request('/orders', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Correlation-Id': `corr-${randomUUID()}` },
    body: JSON.stringify({
      customer_id: 'C-CANCEL',
      email: 'c@example.com',
      items: [{ sku: 'MUG-WHT', qty: 1 }],
    }),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as OrderView).id;
}

async function setStatus(orderId: string, status: OrderStatus) {
  await db.pool.query('update orders set status = $2 where id = $1', [orderId, status]);
}

async function statusOf(orderId: string) {
  const { rows } = await db.pool.query<{ status: string; status_reason: string | null }>(
    'select status, status_reason from orders where id = $1',
    [orderId],
  );
  return rows[0];
}

async function cancelReasonOf(orderId: string) {
  const { rows } = await db.pool.query<{ cancel_code: string | null; cancel_note: string | null }>(
    'select cancel_code, cancel_note from orders where id = $1',
    [orderId],
  );
  return rows[0];
}

function cancel(app: ReturnType<typeof appWith>, orderId: string, body?: unknown) {
  return app.request(`/orders/${orderId}/cancel`, {
    method: 'POST',
    ...(body === undefined
      ? {}
      : { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) }),
  });
}

describe('before the saga starts (no workflow yet)', () => {
  it('cancels in the database with an order.cancelled event carrying the code, never the note', async () => {
    const app = realApp();
    const orderId = await placeOrder(app);
    const res = await cancel(app, orderId, { code: 'changed_mind', note: 'ordered the wrong size' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      id: orderId,
      status: 'CANCELLED',
      via: 'database',
      reason: cancelWording('changed_mind'),
    });
    expect(await statusOf(orderId)).toEqual({
      status: 'CANCELLED',
      status_reason: cancelWording('changed_mind'),
    });
    expect(await cancelReasonOf(orderId)).toEqual({
      cancel_code: 'changed_mind',
      cancel_note: 'ordered the wrong size',
    });

    const { rows } = await db.pool.query<{ type: string; payload: { correlationId: string; data: unknown } }>(
      'select type, payload from event_outbox where order_id = $1 order by id',
      [orderId],
    );
    expect(rows.map((r) => r.type)).toEqual(['order.placed', 'order.cancelled']);
    expect(rows[1]!.payload.data).toEqual({ reason: cancelWording('changed_mind') });
    // The cancel joins the order's own trail.
    expect(rows[1]!.payload.correlationId).toBe(rows[0]!.payload.correlationId);

    // Asked again, its answer lost: the same success, and the first cancel's reason stands.
    const again = await cancel(app, orderId, { code: 'ordered_by_mistake', note: 'second thoughts' });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({
      id: orderId,
      status: 'CANCELLED',
      via: 'already',
      reason: cancelWording('changed_mind'),
    });
    expect(await cancelReasonOf(orderId)).toEqual({
      cancel_code: 'changed_mind',
      cancel_note: 'ordered the wrong size',
    });
    expect(await statusOf(orderId)).toEqual({
      status: 'CANCELLED',
      status_reason: cancelWording('changed_mind'),
    });
  });

  it("asked again of an order cancelled before cancel codes were kept: 200, without the customer's old words", async () => {
    const app = realApp();
    const orderId = await placeOrder(app);
    // Before migration 000009 the status reason was the customer's own text.
    await db.pool.query(
      `update orders set status = 'CANCELLED', status_reason = 'call me on +1 555 0100', cancel_code = null
        where id = $1`,
      [orderId],
    );
    const res = await cancel(app, orderId);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ id: orderId, status: 'CANCELLED', via: 'already' });
  });

  it('two cancels at once, neither finding a saga: one cancel, both answered 200', async () => {
    const orderId = await placeOrder();
    // Both have found the order open and asked Temporal before either cancels in the database.
    let arrived = 0;
    let bothAsked!: () => void;
    const asked = new Promise<void>((resolve) => (bothAsked = resolve));
    const app = appWith({
      cancel: async () => {
        if (++arrived === 2) bothAsked();
        await asked;
        return { kind: 'not_running' };
      },
      latestRun: () => Promise.reject(new Error('not used here')),
    });
    const [first, second] = await Promise.all([
      cancel(app, orderId, { code: 'changed_mind' }),
      cancel(app, orderId, { code: 'changed_mind' }),
    ]);
    expect([first.status, second.status]).toEqual([200, 200]);
    for (const res of [first, second])
      expect(await res.json()).toEqual({
        id: orderId,
        status: 'CANCELLED',
        via: 'database',
        reason: cancelWording('changed_mind'),
      });
    const { rows } = await db.pool.query<{ type: string }>(
      'select type from event_outbox where order_id = $1 order by id',
      [orderId],
    );
    expect(rows.map((r) => r.type)).toEqual(['order.placed', 'order.cancelled']);
  });

  it('takes the seed-era {"reason"} as the note with code other', async () => {
    const app = realApp();
    const orderId = await placeOrder(app);
    expect((await cancel(app, orderId, { reason: 'changed my mind' })).status).toBe(200);
    expect(await statusOf(orderId)).toEqual({ status: 'CANCELLED', status_reason: cancelWording('other') });
    expect(await cancelReasonOf(orderId)).toEqual({ cancel_code: 'other', cancel_note: 'changed my mind' });
  });

  it('accepts no body, and an empty JSON body, with the default code', async () => {
    const app = realApp();
    const bare = await placeOrder(app);
    expect((await cancel(app, bare)).status).toBe(200);
    expect((await statusOf(bare))?.status_reason).toBe(cancelWording('customer_request'));
    expect(await cancelReasonOf(bare)).toEqual({ cancel_code: 'customer_request', cancel_note: null });

    const empty = await placeOrder(app);
    const res = await app.request(`/orders/${empty}/cancel`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Content-Length': '0' },
      body: '',
    });
    expect(res.status).toBe(200);
  });
});

describe('refusals', () => {
  it('404 for an unknown order, 400 for a malformed id or body, 415 for a non-JSON body', async () => {
    const app = realApp();
    expect((await cancel(app, randomUUID())).status).toBe(404);
    expect((await cancel(app, 'nope')).status).toBe(400);
    const orderId = await placeOrder(app);
    const tooLong = await cancel(app, orderId, { reason: 'x'.repeat(501) });
    expect(tooLong.status).toBe(400);
    expect(
      ((await tooLong.json()) as { error: { fields: Array<{ path: string }> } }).error.fields[0]!.path,
    ).toBe('reason');
    expect((await cancel(app, orderId, { why: 'typo' })).status).toBe(400);
    for (const [body, path] of [
      [{ code: 'because' }, 'code'],
      [{ code: 'other', note: 'x'.repeat(501) }, 'note'],
      [{ code: 'other', reason: 'both forms' }, 'reason'],
      [{ note: '' }, 'note'],
    ] as const) {
      const res = await cancel(app, orderId, body);
      expect(res.status).toBe(400);
      expect(
        ((await res.json()) as { error: { fields: Array<{ path: string }> } }).error.fields[0]!.path,
      ).toBe(path);
    }
    const text = await app.request(`/orders/${orderId}/cancel`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: 'please',
    });
    expect(text.status).toBe(415);
    expect((await statusOf(orderId))?.status).toBe('PENDING');
  });

  it('409 for an order that is already final, without asking the saga', async () => {
    const { workflows, calls } = scripted();
    const app = appWith(workflows);
    const orderId = await placeOrder(app);
    await setStatus(orderId, 'COMPLETED');
    const res = await cancel(app, orderId);
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { code: string; status: string } }).error).toMatchObject({
      code: 'order_final',
      status: 'COMPLETED',
    });
    expect(calls).toHaveLength(0);
  });

  it("a cancel racing an operator's retry is judged on the order as the retry left it", async () => {
    const { workflows } = scripted(); // run 2 not started yet: the API cancels it directly
    const app = appWith(workflows);
    const orderId = await placeOrder(app);
    await db.pool.query(`update orders set status = 'PAYMENT_FAILED', started_run = 1 where id = $1`, [
      orderId,
    ]);
    const retry = await db.pool.connect();
    try {
      // The retry holds the order's row (as retryOrder does) while the customer's cancel arrives.
      await retry.query('begin');
      await retry.query('select 1 from orders where id = $1 for update', [orderId]);
      const answer = cancel(app, orderId);
      await new Promise((resolve) => setTimeout(resolve, 300));
      await retry.query(`update orders set status = 'PENDING', run = 2 where id = $1`, [orderId]);
      await retry.query('commit');
      // Judged on PAYMENT_FAILED it would be 409 "final", and run 2 would charge the customer.
      const res = await answer;
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        id: orderId,
        status: 'CANCELLED',
        via: 'database',
        reason: cancelWording(DEFAULT_CANCEL_CODE),
      });
    } finally {
      retry.release();
    }
  });

  it("a refused cancel still stands against a later retry: the customer's word is kept", async () => {
    const { workflows } = scripted(); // no saga runs for either order
    const app = appWith(workflows);
    // Declined (409 order_final), and stalled with its saga gone (409 cancel_unavailable): both are
    // orders an operator's retry would otherwise run, and charge, again.
    const declined = await placeOrder(app);
    const stalled = await placeOrder(app);
    await db.pool.query(`update orders set status = 'PAYMENT_FAILED', started_run = 1 where id = $1`, [
      declined,
    ]);
    await db.pool.query(`update orders set status = 'RESERVED', started_run = 1 where id = $1`, [stalled]);
    for (const [orderId, code] of [
      [declined, 'order_final'],
      [stalled, 'cancel_unavailable'],
    ] as const) {
      const res = await cancel(app, orderId);
      expect(res.status).toBe(409);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      expect(error.code).toBe(code);
      // The refusal says the request is kept (a final order that a retry could otherwise run again).
      if (code === 'order_final') expect(error.message).toMatch(/Your request is kept: it will not be run/);
      else expect(error.message).toMatch(/Your request is kept: the order will not be charged/);
      expect(await retryOrder(db.pool, orderId, { reason: 'gateway back', latest: undefined })).toMatchObject(
        {
          kind: 'refused',
          reason:
            code === 'order_final'
              ? expect.stringMatching(/a cancel was asked for this order .* It has ended; the cancel stands/)
              : expect.stringMatching(/a cancel was asked for this order/),
        },
      );
    }
  });
});

describe('with a running saga', () => {
  it('a cancel the saga did not answer is recorded until one it carries out in other words replaces it', async () => {
    const { workflows } = scripted(
      { kind: 'timeout' },
      {
        kind: 'accepted',
        status: 'CANCELLED',
        reason: cancelWording('ordered_by_mistake'),
      },
      { kind: 'accepted', status: 'CANCELLED', reason: cancelWording('ordered_by_mistake') },
    );
    const app = appWith(workflows);
    const orderId = await placeOrder(app);
    await setStatus(orderId, 'RESERVED');
    // Unanswered: kept, so an outage does not lose the customer's words.
    expect((await cancel(app, orderId, { code: 'changed_mind', note: 'cheaper elsewhere' })).status).toBe(
      503,
    );
    expect(await cancelReasonOf(orderId)).toEqual({
      cancel_code: 'changed_mind',
      cancel_note: 'cheaper elsewhere',
    });
    // The saga then cancels in another request's words: the record says what the e-mail said.
    expect((await cancel(app, orderId, { code: 'ordered_by_mistake', note: 'wrong size' })).status).toBe(200);
    expect(await cancelReasonOf(orderId)).toEqual({
      cancel_code: 'ordered_by_mistake',
      cancel_note: 'wrong size',
    });
    // A retried cancel with the same code keeps the first note.
    expect((await cancel(app, orderId, { code: 'ordered_by_mistake', note: 'again' })).status).toBe(200);
    expect(await cancelReasonOf(orderId)).toEqual({
      cancel_code: 'ordered_by_mistake',
      cancel_note: 'wrong size',
    });
  });

  it('200 via the workflow when the saga accepts', async () => {
    const { workflows, calls } = scripted({ kind: 'accepted', status: 'CANCELLED' });
    const app = appWith(workflows);
    const orderId = await placeOrder(app);
    await setStatus(orderId, 'RESERVED');
    const res = await cancel(app, orderId, { code: 'delivery_too_slow', note: 'call me: +1 555 0100' });
    expect(res.status).toBe(200);
    // This saga (a stand-in) gave no words and wrote nothing on the order: none to report.
    expect(await res.json()).toEqual({ id: orderId, status: 'CANCELLED', via: 'workflow' });
    // The saga (and so the e-mail) gets the code's wording; the note stays in the database.
    expect(calls).toEqual([{ orderId, reason: cancelWording('delivery_too_slow') }]);
    expect(await cancelReasonOf(orderId)).toEqual({
      cancel_code: 'delivery_too_slow',
      cancel_note: 'call me: +1 555 0100',
    });
  });

  it("records no reason of its own when it joined a cancel made first with another code (the saga's wording stands), and is told that wording", async () => {
    // The operator's cancel reached the saga first; the customer's, a moment later, joined it.
    const { workflows } = scripted({
      kind: 'accepted',
      status: 'CANCELLED',
      reason: cancelWording('suspected_fraud'),
    });
    const app = appWith(workflows);
    const orderId = await placeOrder(app);
    await setStatus(orderId, 'RESERVED');
    const res = await cancel(app, orderId, { code: 'changed_mind', note: 'my note' });
    expect(res.status).toBe(200); // the order is being cancelled, as asked
    // The answer says in whose words, so this request learns its code and note are not the ones kept.
    expect(await res.json()).toEqual({
      id: orderId,
      status: 'CANCELLED',
      via: 'workflow',
      reason: cancelWording('suspected_fraud'),
    });
    // Not changed_mind: the e-mail and the event say suspected_fraud's wording; that request records it.
    expect(await cancelReasonOf(orderId)).toEqual({ cancel_code: null, cancel_note: null });
  });

  it("records its reason when the saga answers in words of its own (a cancel it found recorded), not another code's", async () => {
    const { workflows } = scripted({
      kind: 'accepted',
      status: 'CANCELLED',
      reason: 'cancelled by the customer',
    });
    const app = appWith(workflows);
    const orderId = await placeOrder(app);
    await setStatus(orderId, 'RESERVED');
    expect((await cancel(app, orderId, { code: 'changed_mind', note: 'my note' })).status).toBe(200);
    expect(await cancelReasonOf(orderId)).toEqual({ cancel_code: 'changed_mind', cancel_note: 'my note' });
  });

  it("500 cancel_incomplete records nothing when the saga was cancelling with another code's wording", async () => {
    const { workflows } = scripted({ kind: 'incomplete', reason: cancelWording('suspected_fraud') });
    const app = appWith(workflows);
    const orderId = await placeOrder(app);
    await setStatus(orderId, 'RESERVED');
    expect((await cancel(app, orderId, { code: 'changed_mind' })).status).toBe(500);
    expect(await cancelReasonOf(orderId)).toEqual({ cancel_code: null, cancel_note: null });
  });

  it('500 cancel_incomplete, naming no internals, when the saga accepted but a compensation failed for good', async () => {
    const { workflows } = scripted({ kind: 'incomplete', reason: cancelWording('changed_mind') });
    const app = appWith(workflows);
    const orderId = await placeOrder(app);
    await setStatus(orderId, 'RESERVED');
    const res = await cancel(app, orderId, { code: 'changed_mind' });
    expect(res.status).toBe(500);
    const body = (await res.json()) as { error: { code: string; message: string; status: string } };
    expect(body.error).toMatchObject({ code: 'cancel_incomplete', status: 'RESERVED' });
    expect(body.error.message).toMatch(/needs an operator/);
    // The saga was cancelling with this request's wording: its reason is on record for when the
    // operator has finished the compensation.
    expect(await cancelReasonOf(orderId)).toEqual({ cancel_code: 'changed_mind', cancel_note: null });
  });

  it('409 saying to ask again once done, for a PAID order whose failed run is still giving the payment back', async () => {
    const { workflows, calls } = scripted({ kind: 'rejected', reason: 'too late: order is already paid' });
    const app = appWith(workflows);
    const orderId = await placeOrder(app);
    await db.pool.query(`update orders set status = 'PAID', undo_run = run where id = $1`, [orderId]);
    const res = await cancel(app, orderId);
    expect(calls).toHaveLength(1); // asked the saga: not refused as "already paid" up front
    expect(res.status).toBe(409);
    expect(await res.json()).toEqual({
      error: {
        code: 'cancel_rejected',
        message: expect.stringMatching(/still giving the payment back; once it has ended, asking again/),
        status: 'PAID',
      },
    });
  });

  it("409 with the saga's reason when it refuses", async () => {
    const { workflows } = scripted({ kind: 'rejected', reason: 'too late: order is already paid' });
    const app = appWith(workflows);
    const orderId = await placeOrder(app);
    await setStatus(orderId, 'RESERVED');
    const res = await cancel(app, orderId);
    expect(res.status).toBe(409);
    expect(await res.json()).toEqual({
      error: { code: 'cancel_rejected', message: 'too late: order is already paid', status: 'RESERVED' },
    });
  });

  it('retries through the saga when it started between the two checks', async () => {
    // First: no workflow yet; the direct cancel then finds the order RESERVED (the saga won the
    // race), so the API asks the now-running saga again.
    const { workflows, calls } = scripted({ kind: 'not_running' }, { kind: 'accepted', status: 'RESERVED' });
    const app = appWith(workflows);
    const orderId = await placeOrder(app);
    await setStatus(orderId, 'RESERVED');
    const res = await cancel(app, orderId);
    expect(res.status).toBe(200);
    // Still cancelling: no words to report yet.
    expect(await res.json()).toEqual({ id: orderId, status: 'RESERVED', via: 'workflow' });
    expect(calls).toHaveLength(2);
  });

  it('409 when the order is in progress but no saga runs for it; never cancels behind its back', async () => {
    const app = realApp(); // no workflow exists for this order on the dev server
    const orderId = await placeOrder(app);
    await setStatus(orderId, 'RESERVED');
    const res = await cancel(app, orderId);
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('cancel_unavailable');
    expect((await statusOf(orderId))?.status).toBe('RESERVED');
  });

  it('200 via the database for an order a failed run left RESERVED after undoing itself', async () => {
    const app = realApp(); // no workflow runs for this order: its run failed and closed
    const orderId = await placeOrder(app);
    await db.pool.query(
      `update orders set status = 'RESERVED', started_run = 1, undo_run = 1 where id = $1`, // compensated
      [orderId],
    );
    const res = await cancel(app, orderId);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      id: orderId,
      status: 'CANCELLED',
      via: 'database',
      reason: cancelWording(DEFAULT_CANCEL_CODE),
    });
    expect((await statusOf(orderId))?.status).toBe('CANCELLED');
  });

  it('503 when the workflow exists but nobody answers in time; the order is left alone', async () => {
    const app = realApp();
    const orderId = await placeOrder(app);
    const workflowId = orderWorkflowId(orderId);
    // Started on a task queue that no worker polls: the Update can never be answered.
    await temporal.workflow.start(WORKFLOW_TYPE, {
      workflowId,
      taskQueue: `api-test-no-worker-${randomUUID()}`,
      args: [{ orderId, customerId: 'C-CANCEL', correlationId: 'c', paymentDeadlineMs: 60_000 }],
      workflowExecutionTimeout: '5 minutes',
    });
    startedWorkflows.push(workflowId);

    const started = Date.now();
    const res = await cancel(app, orderId, { code: 'changed_mind', note: 'found it cheaper' });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('workflow_unavailable');
    expect(Date.now() - started).toBeLessThan(10_000);
    expect((await statusOf(orderId))?.status).toBe('PENDING');
    // The customer's code and note are kept: if the run then stops, a settlement finishes the cancel
    // in the customer's words.
    expect(await cancelReasonOf(orderId)).toEqual({
      cancel_code: 'changed_mind',
      cancel_note: 'found it cheaper',
    });
  });
});
