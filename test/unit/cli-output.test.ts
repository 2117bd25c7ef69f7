/**
 * The operator CLI's human output: what a dead letter carries is printed, and a dead letter's fields
 * are whatever its publisher chose. No byte of theirs may drive the operator's terminal.
 */
import { describe, expect, it } from 'vitest';
import { formatHuman, formatJson, pairs } from '../../cli/output.js';
import { commandResult } from '../../ops/result.js';

describe('formatHuman', () => {
  it('shows control characters and bidi overrides as escapes, in ids, reasons and summaries', () => {
    const out = formatHuman(
      commandResult('dlq redrive', [
        {
          id: 'msg-\u001b[2K\u001b[1A',
          ok: false,
          outcome: 'kept',
          reason: 'not sent by a trusted producer\u001b[8m (hidden)\r\nok   fake line\u202e',
          details: { type: 'payment.completed\u0007', routingKey: 'x\u009b31m' },
        },
      ]),
      (item) => pairs(item.details, ['type', 'routingKey']),
    );
    // eslint-disable-next-line no-control-regex -- no control character but the line breaks
    expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    expect(out.split('\n')).toEqual([
      'FAIL msg-\\u001b[2K\\u001b[1A  kept  type=payment.completed\\u0007 routingKey=x\\u009b31m',
      '     not sent by a trusted producer\\u001b[8m (hidden)\\u000d\\u000aok   fake line\\u202e',
      'dlq redrive: 1 item(s), 0 ok, 1 refused or failed',
      '',
    ]);
  });

  it('--json escapes what JSON.stringify leaves raw (DEL, C1, bidi), and stays the same JSON', () => {
    const result = commandResult('dlq show', [
      {
        id: 'm\u009b2J',
        ok: true,
        outcome: 'dead-lettered',
        reason: 'x\u007f\u202e\u001b\u061c\u200f\u2028\u2029',
      },
    ]);
    const out = formatJson(result);
    // eslint-disable-next-line no-control-regex -- no control character but the line breaks
    expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e\u061c\u200f\u2028\u2029]/);
    expect(JSON.parse(out)).toEqual(result);
  });

  it('leaves ordinary text, accents and emoji alone', () => {
    const out = formatHuman(
      commandResult('retry', [{ id: 'a', ok: true, outcome: 'retried', reason: 'café ☕' }]),
    );
    expect(out).toContain('     café ☕\n');
  });
});
