/**
 * A note people read (a cancel note; a retry's reason, shown to the customer on their order): the
 * API and the operator CLI refuse the same text (domain/text.ts noteProblem).
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CancelOrderBodySchema, RetryOrderBodySchema } from '../../api/schemas.js';
import { noteProblem } from '../../domain/text.js';
import { UsageError } from '../../ops/result.js';
import { retryOrders, type RetryDeps } from '../../ops/retry.js';

const BAD = {
  'a bidi override': 'gateway back \u202e.sredro',
  'a bidi isolate': 'fixed \u2066x\u2069',
  'a right-to-left mark': 'refund to \u200fmoc.elpmaxe@evil\u200e ok',
  'an Arabic letter mark': 'ok \u061c',
  'a line separator': 'fixed\u2028ok   fake line',
  'a paragraph separator': 'fixed\u2029ok',
  'a NUL byte': 'fixed\u0000',
  'too much text': 'x'.repeat(501),
};

describe('a note people read', () => {
  it.each(Object.entries(BAD))('is refused by the API, for a retry as for a cancel, with %s', (_, text) => {
    const retry = RetryOrderBodySchema.safeParse({ reason: text });
    expect(retry.success).toBe(false);
    expect(retry.error?.issues[0]?.path).toEqual(['reason']);
    expect(CancelOrderBodySchema.safeParse({ note: text }).success).toBe(false);
    expect(noteProblem(text)).toEqual(expect.any(String));
  });

  it.each(Object.entries(BAD))(
    'is refused by orders retry --reason before anything is asked, with %s',
    async (_, text) => {
      // Refused before any I/O: these dependencies are never reached.
      const deps = {} as RetryDeps;
      await expect(
        retryOrders(deps, { selection: { orderIds: [randomUUID()] }, reason: text }),
      ).rejects.toThrow(UsageError);
    },
  );

  it('allows ordinary text in any script', () => {
    for (const text of [
      'payment gateway is back',
      'Zahlung wieder möglich',
      'الدفع يعمل الآن',
      '支付已恢复',
    ]) {
      expect(noteProblem(text)).toBeUndefined();
      expect(RetryOrderBodySchema.safeParse({ reason: text }).success).toBe(true);
    }
  });
});
