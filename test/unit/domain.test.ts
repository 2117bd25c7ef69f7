/** The order and payment state machines and their named rules (domain/). */
import { describe, expect, it } from 'vitest';
import {
  FINAL_STATUSES,
  ORDER_STATUSES,
  mayBeCancelledNow,
  mayBeCancelledWithoutSaga,
  mayBeRetried,
  maySettle,
  mayEnter,
  paidOrderMayBeCancelled,
  stockIsSold,
} from '../../domain/order.js';
import { chargeKey, moneyIsHeld, refundKey, voidKey } from '../../domain/payment.js';
import { textProblem } from '../../domain/text.js';

describe('order state machine', () => {
  it('has the edges of the saga, the refunded PAID → CANCELLED rule and the retry, and no others', () => {
    const edges = ORDER_STATUSES.flatMap((from) =>
      ORDER_STATUSES.filter((to) => mayEnter(from, to)).map((to) => `${from}→${to}`),
    );
    expect(edges.sort()).toEqual(
      [
        'PENDING→RESERVED',
        'PENDING→OUT_OF_STOCK',
        'PENDING→CANCELLED',
        'PENDING→PENDING', // a retry of a run that failed before reserving
        'RESERVED→PAID',
        'RESERVED→PAYMENT_FAILED',
        'RESERVED→CANCELLED',
        'RESERVED→PENDING', // a retry of a run that failed holding stock
        'PAID→COMPLETED',
        'PAID→CANCELLED', // only once refunded
        'PAID→PENDING', // a retry of a run that failed after the charge and refunded it
        'PAYMENT_FAILED→PENDING', // a retry
      ].sort(),
    );
  });

  it('a final order leaves only by a retry, and only PAYMENT_FAILED may be retried', () => {
    for (const status of FINAL_STATUSES) {
      const exits = ORDER_STATUSES.filter((to) => mayEnter(status, to));
      expect(exits).toEqual(status === 'PAYMENT_FAILED' ? ['PENDING'] : []);
    }
  });

  it('PAID may be cancelled only once its capture was refunded', () => {
    expect(paidOrderMayBeCancelled('REFUNDED')).toBe(true);
    for (const p of ['CAPTURED', 'CHARGING', 'VOIDED', 'DECLINED', undefined] as const) {
      expect(paidOrderMayBeCancelled(p)).toBe(false);
    }
  });

  it('stock is sold once the order is paid and the capture stands', () => {
    expect(stockIsSold('COMPLETED', 'CAPTURED')).toBe(true);
    expect(stockIsSold('PAID', 'CAPTURED')).toBe(true);
    expect(stockIsSold('PAID', 'REFUNDED')).toBe(false);
    expect(stockIsSold('RESERVED', 'CHARGING')).toBe(false);
    expect(stockIsSold('PAYMENT_FAILED', 'VOIDED')).toBe(false);
  });
});

describe('may be cancelled now', () => {
  it('before payment yes; once paid or final no, with the reason', () => {
    expect(mayBeCancelledNow('PENDING')).toEqual({ ok: true });
    expect(mayBeCancelledNow('RESERVED')).toEqual({ ok: true });
    // Being undone is not ended: the refusal does not say it is.
    expect(mayBeCancelledNow('RESERVED', { compensating: true })).toEqual({
      ok: false,
      reason: "too late: the order's run is ending (the order is RESERVED) and giving back what it held",
    });
    expect(mayBeCancelledNow('PAID')).toEqual({ ok: false, reason: 'too late: order is already paid' });
    expect(mayBeCancelledNow('COMPLETED')).toEqual({ ok: false, reason: 'too late: order is already paid' });
    expect(mayBeCancelledNow('OUT_OF_STOCK')).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/OUT_OF_STOCK/),
    });
  });
});

describe('may be cancelled with no saga running', () => {
  const facts = { runUndone: false, payments: [] } as const;
  it('PENDING yes; RESERVED only once its failed run undid itself and holds no money', () => {
    expect(mayBeCancelledWithoutSaga({ ...facts, status: 'PENDING' })).toEqual({ ok: true });
    expect(mayBeCancelledWithoutSaga({ ...facts, status: 'RESERVED' })).toMatchObject({ ok: false });
    expect(mayBeCancelledWithoutSaga({ status: 'RESERVED', runUndone: true, payments: ['VOIDED'] })).toEqual({
      ok: true,
    });
    for (const held of ['CAPTURED', 'CHARGING'] as const) {
      expect(mayBeCancelledWithoutSaga({ status: 'RESERVED', runUndone: true, payments: [held] })).toEqual({
        ok: false,
        reason: expect.stringContaining(held),
      });
    }
    for (const status of ['COMPLETED', 'CANCELLED', 'PAYMENT_FAILED', 'OUT_OF_STOCK'] as const) {
      expect(mayBeCancelledWithoutSaga({ status, runUndone: true, payments: [] })).toMatchObject({
        ok: false,
      });
    }
  });

  it('PAID only once its failed run gave the capture back; otherwise it is a sale in progress', () => {
    expect(mayBeCancelledWithoutSaga({ status: 'PAID', runUndone: true, payments: ['REFUNDED'] })).toEqual({
      ok: true,
    });
    expect(mayBeCancelledWithoutSaga({ status: 'PAID', runUndone: true, payments: ['CAPTURED'] })).toEqual({
      ok: false,
      reason: expect.stringMatching(/CAPTURED.*an operator settles it/),
    });
    expect(mayBeCancelledWithoutSaga({ status: 'PAID', runUndone: false, payments: ['CAPTURED'] })).toEqual({
      ok: false,
      reason: 'too late: order is already paid',
    });
    // What the API asks first: the saga's own rule stays "too late" for a PAID order.
    expect(mayBeCancelledNow('PAID', { runUndone: true })).toEqual({ ok: true });
    expect(mayBeCancelledNow('PAID', { runUndone: true, compensating: true })).toMatchObject({ ok: false });
  });
});

describe('may be retried', () => {
  const facts = { runOpen: false, payments: [] };
  it('a payment that failed with no money taken: yes', () => {
    expect(mayBeRetried({ ...facts, status: 'PAYMENT_FAILED', payments: ['DECLINED'] })).toEqual({
      ok: true,
    });
    expect(mayBeRetried({ ...facts, status: 'PAYMENT_FAILED', payments: ['VOIDED', 'REFUNDED'] })).toEqual({
      ok: true,
    });
  });

  it('an order left unfinished by a run that failed: yes', () => {
    expect(mayBeRetried({ ...facts, status: 'RESERVED' })).toEqual({ ok: true });
    expect(mayBeRetried({ ...facts, status: 'PENDING' })).toEqual({ ok: true });
  });

  it('a PAID order only once its failed run gave the capture back', () => {
    const paid = { ...facts, status: 'PAID' as const };
    expect(mayBeRetried({ ...paid, runUndone: true, payments: ['REFUNDED'] })).toEqual({ ok: true });
    expect(mayBeRetried({ ...paid, runUndone: true, payments: ['CAPTURED'] })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/CAPTURED: money is held/),
    });
    // A run stopped with its capture standing: a sale in progress, finished by its own run (a reset).
    expect(mayBeRetried({ ...paid, runUndone: false, payments: ['REFUNDED'] })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/never began to give the money back/),
    });
  });

  it('refuses completed, cancelled and out-of-stock orders, a run still going, and money held or in doubt', () => {
    for (const status of ['COMPLETED', 'CANCELLED', 'OUT_OF_STOCK'] as const) {
      expect(mayBeRetried({ ...facts, status })).toMatchObject({
        ok: false,
        reason: expect.stringContaining(status),
      });
    }
    expect(mayBeRetried({ ...facts, status: 'RESERVED', runOpen: true })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/still going/),
    });
    expect(mayBeRetried({ ...facts, status: 'PAYMENT_FAILED', payments: ['CHARGING'] })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/CHARGING/),
    });
    expect(mayBeRetried({ ...facts, status: 'PAID', payments: ['CAPTURED'] })).toMatchObject({ ok: false });
  });

  it("refuses an order whose customer asked to cancel it, or whose customer's data was erased", () => {
    const failed = { ...facts, status: 'PAYMENT_FAILED' as const, payments: ['DECLINED' as const] };
    const stopped = { ...facts, status: 'RESERVED' as const };
    expect(mayBeRetried({ ...stopped, cancelRequested: true })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(
        /a cancel was asked for.*charge not made yet refuses the recorded cancel/,
      ),
    });
    // A run that took the cancel (its compensation began) is settled, which finishes that cancel.
    expect(mayBeRetried({ ...stopped, cancelRequested: true, runUndone: true })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/a cancel was asked for.*orders settle <id> .* finishes the cancel/),
    });
    // An order that ended: the cancel stands (or, money still held, a settlement gives it back).
    expect(mayBeRetried({ ...failed, cancelRequested: true })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/It has ended; the cancel stands/),
    });
    expect(mayBeRetried({ ...failed, payments: ['CAPTURED'], cancelRequested: true })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/It has ended holding money: orders settle/),
    });
    expect(mayBeRetried({ ...failed, customerErased: true })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/erased/),
    });
  });
});

describe('payment keys', () => {
  it('run 1 charges under the order id (as before runs existed); later runs under keys of their own', () => {
    expect(chargeKey('o-1', 1)).toBe('o-1');
    expect(chargeKey('o-1', 2)).toBe('o-1:run-2');
    expect(new Set([voidKey('o-1'), refundKey('o-1'), chargeKey('o-1', 1)]).size).toBe(3);
  });

  it('money is held while captured or in doubt', () => {
    expect(
      ['CHARGING', 'CAPTURED', 'DECLINED', 'VOIDED', 'REFUNDED'].filter((s) => moneyIsHeld(s as never)),
    ).toEqual(['CHARGING', 'CAPTURED']);
  });
});

describe('storable text', () => {
  it.each([
    ['nul', 'a\u0000b', /control/],
    ['bell', 'a\u0007', /control/],
    ['newline', 'a\nb', /control/],
    ['C1', '\u0085', /control/],
    ['lone high surrogate', 'x\ud800', /well-formed/],
    ['lone low surrogate', '\udc00x', /well-formed/],
  ])('refuses %s', (_name, text, problem) => {
    expect(textProblem(text)).toMatch(problem);
  });

  it('accepts ordinary text, accents, emoji (a surrogate pair) and tabs-free punctuation', () => {
    for (const text of ['changed my mind', 'changé d’avis', 'too big 🙂', '100% — sure?']) {
      expect(textProblem(text)).toBeUndefined();
    }
  });
});

describe('maySettle (orders settle)', () => {
  const held = {
    status: 'PAYMENT_FAILED',
    run: 2,
    runOpen: false,
    runUndone: false,
    heldPayments: [],
    stockHeldBy: null,
  } as const;

  it('an ended order whose current run holds money or stock, no run open: yes', () => {
    for (const status of ['PAYMENT_FAILED', 'CANCELLED', 'OUT_OF_STOCK'] as const) {
      expect(maySettle({ ...held, status, stockHeldBy: 2 })).toEqual({ ok: true });
    }
    expect(maySettle({ ...held, heldPayments: [{ run: 2, status: 'CHARGING' }] })).toEqual({ ok: true });
    // Not ended, but its run had begun to give them back (a cancel, a failed run, stopped midway).
    for (const status of ['RESERVED', 'PAID'] as const) {
      expect(maySettle({ ...held, status, runUndone: true, stockHeldBy: 2 })).toEqual({ ok: true });
    }
    expect(maySettle({ ...held, heldPayments: [{ run: 2, status: 'CAPTURED' }], stockHeldBy: 2 })).toEqual({
      ok: true,
    });
  });

  it('refuses a completed order, one not ended, an open run, nothing held, and what an earlier run holds', () => {
    const reason = (facts: Parameters<typeof maySettle>[0]) => {
      const verdict = maySettle(facts);
      return verdict.ok ? 'allowed' : verdict.reason;
    };
    expect(reason({ ...held, status: 'COMPLETED', runUndone: true, stockHeldBy: 2 })).toMatch(/sale stands/);
    for (const status of ['PENDING', 'RESERVED', 'PAID'] as const) {
      expect(reason({ ...held, status, stockHeldBy: 2 })).toMatch(/never began to give back/);
    }
    // A cancel asked that its stopped run never took: a retry would refuse it; a reset finishes it.
    expect(reason({ ...held, status: 'RESERVED', stockHeldBy: 2, cancelRequested: true })).toMatch(
      /never took the cancel asked for it: reset the run/,
    );
    // A run Temporal forgot, never having begun to give back: the advice, and with the operator's
    // word (--forgotten-run) a settlement; never for a run that is open or merely not confirmed.
    for (const status of ['RESERVED', 'PAID'] as const) {
      const forgotten = { ...held, status, stockHeldBy: 2, runForgotten: true };
      expect(reason(forgotten)).toMatch(/Temporal has no run of it .* settle it with --forgotten-run/);
      expect(maySettle({ ...forgotten, forgottenRunConfirmed: true })).toEqual({ ok: true });
      expect(reason({ ...forgotten, runForgotten: false, forgottenRunConfirmed: true })).toMatch(
        /never began to give back .* retry it, or reset its run/,
      );
      expect(reason({ ...forgotten, runOpen: true, forgottenRunConfirmed: true })).toMatch(/is open/);
    }
    expect(reason({ ...held, runOpen: true, stockHeldBy: 2 })).toMatch(/a run of the order is open/);
    // A running saga is told to wait, not sent to retry or reset a run that is not stopped.
    expect(reason({ ...held, status: 'RESERVED', runOpen: true, stockHeldBy: 2 })).toMatch(
      /a run of the order is open/,
    );
    expect(reason(held)).toMatch(/nothing to settle/);
    expect(reason({ ...held, heldPayments: [{ run: 1, status: 'CAPTURED' }] })).toMatch(
      /run 1's payment is CAPTURED, not the current run 2's/,
    );
    expect(reason({ ...held, stockHeldBy: 1 })).toMatch(/run 1's reservation holds the stock/);
  });
});
