/**
 * `orders reconcile`'s diagnosis of one order: which stalled orders it leaves to a settlement (money
 * or stock held, and nothing will run the order again) and which it retries.
 */
import { describe, expect, it } from 'vitest';
import type { StalledOrder } from '../../db/reconcile.js';
import type { LatestRun } from '../../lib/temporal.js';
import { diagnose } from '../../ops/reconcile.js';

const order = (fields: Partial<StalledOrder>): StalledOrder => ({
  id: '00000000-0000-4000-8000-000000000001',
  status: 'RESERVED',
  run: 1,
  startedRun: 1,
  updatedAt: '2026-11-26T10:00:00.000Z',
  request: null,
  heldPayment: null,
  stockHeldBy: null,
  runUndone: false,
  cancelRequested: false,
  ...fields,
});
const terminated: LatestRun = {
  run: 1,
  open: false,
  status: 'TERMINATED',
  runId: 'r1',
  settlement: false,
  sagaRunId: 'r1',
};
const charge = { run: 1, status: 'CHARGING' as const, amount: '10.00', currency: 'USD', chargeKey: 'k' };
const causeOf = (o: StalledOrder) => {
  const d = diagnose(o, terminated);
  return d.stalled ? d.cause : 'not stalled';
};

describe('reconcile: orders whose run stopped while giving back', () => {
  it('holding money in doubt: left to a settlement, never retried', () => {
    expect(causeOf(order({ runUndone: true, heldPayment: charge, stockHeldBy: 1 }))).toBe('money-held');
  });

  it('holding stock, its customer having asked to cancel: left to a settlement (which finishes it)', () => {
    expect(causeOf(order({ runUndone: true, stockHeldBy: 1, cancelRequested: true }))).toBe('stock-held');
  });

  it('holding only stock, no cancel asked: retried, the new run taking the stock over', () => {
    expect(causeOf(order({ runUndone: true, stockHeldBy: 1 }))).toBe('run-ended');
  });

  it('a run not undone (stopped mid-forward) is retried or reset, whatever it holds', () => {
    expect(causeOf(order({ heldPayment: charge, stockHeldBy: 1 }))).toBe('run-ended');
  });

  it('an open run, a settlement included, may still give back: not stalled', () => {
    const open = { ...terminated, open: true, status: 'RUNNING', settlement: true };
    expect(diagnose(order({ runUndone: true, heldPayment: charge }), open)).toEqual({ stalled: false });
  });
});

describe('reconcile: an order whose event was published but whose run never started', () => {
  const waitingOrder = order({
    status: 'PENDING',
    startedRun: 0,
    request: { type: 'order.placed', published: true, outboxId: '1', lastError: null },
  });

  it('is lost when nothing waits at the bridge', () => {
    expect(diagnose(waitingOrder, undefined)).toMatchObject({ stalled: true, cause: 'not-started' });
  });

  it('is queued while messages wait in the bridge’s queue', () => {
    expect(diagnose(waitingOrder, undefined, 3)).toMatchObject({
      stalled: false,
      queued: expect.any(String),
    });
  });

  it('is queued while the bridge’s window is full: it holds the messages behind it, which the queue does not count', () => {
    expect(diagnose(waitingOrder, undefined, 0, true)).toEqual({
      stalled: false,
      queued: expect.stringMatching(/admission window is full .*not sent again/),
    });
  });
});
