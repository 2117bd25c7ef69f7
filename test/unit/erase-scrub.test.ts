/**
 * How `orders erase-customer` rewrites a dead letter (ops/erase-customer.ts scrubbedCopy): addresses
 * matched whole, and nothing published again that still names the customer.
 */
import type { GetMessage } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { addressPattern, scrubbedCopy } from '../../ops/erase-customer.js';

const footprint = { orderIds: ['0b7e6c1e-8f4e-4a7c-9a43-3f0f8f7c2b1d'], emails: ['ann@example.co'] };
const letter = (body: unknown, headers: Record<string, unknown> = {}) =>
  ({
    content: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
    properties: { headers, messageId: 'm-1' },
  }) as unknown as Pick<GetMessage, 'content' | 'properties'>;

describe('addressPattern', () => {
  const ann = addressPattern(['ann@example.co'])!;
  it.each([
    ['"ann@example.co"', true],
    ['to=ANN@Example.CO; bounced', true],
    ['mail ann@example.co.', true],
    ['<ann@example.co>', true],
    ['ann@example.com', false],
    ['joann@example.co', false],
    ['ann@example.co.uk', false],
    ['ann@example.co-op.org', false],
  ])('%s → %s', (text, hers) => {
    expect(ann.test(text)).toBe(hers);
  });

  it('none without addresses, and regex characters in an address are literal', () => {
    expect(addressPattern([])).toBeUndefined();
    expect(addressPattern(['a+b@x.io'])!.test('a+b@x.io')).toBe(true);
    expect(addressPattern(['a+b@x.io'])!.test('aab@xxio')).toBe(false);
  });
});

describe('scrubbedCopy', () => {
  it('keeps an event scrubbed field by field, and empties one that still names the customer', () => {
    const placed = {
      id: 'e-1',
      type: 'order.placed',
      orderId: footprint.orderIds[0],
      data: { customerId: 'C1', email: 'ann@example.co', total: '5.00' },
    };
    const kept = scrubbedCopy(letter(placed), 'C1', footprint)!;
    expect(JSON.parse(kept.content.toString())).toMatchObject({
      id: 'e-1',
      data: { customerId: 'C1', total: '5.00' },
    });
    expect(kept.content.toString()).not.toContain('ann@');
    // The address outside the fields an event has: nothing of the body is kept.
    const odd = scrubbedCopy(letter({ ...placed, email: 'ann@example.co' }), 'C1', footprint)!;
    expect(odd.content.length).toBe(0);
    const flat = scrubbedCopy(letter({ id: 'e-2', data: 'for ann@example.co' }), 'C1', footprint)!;
    expect(flat.content.length).toBe(0);
  });

  it('scrubs the address out of headers, and publishes under the login given, only then', () => {
    const copy = scrubbedCopy(
      letter('not json, ann@example.co', { 'x-death-reason': 'to=ann@example.co bounced' }),
      'C1',
      footprint,
      {
        userId: 'acme-operator',
      },
    )!;
    expect(copy.options.headers?.['x-death-reason']).toBe('to=(erased) bounced');
    expect(copy.options.userId).toBe('acme-operator');
    expect(scrubbedCopy(letter('ann@example.co'), 'C1', footprint)!.options).not.toHaveProperty('userId');
  });

  it('empties a body nested too deep to write back, instead of failing every later erasure', () => {
    // JSON.parse takes this; JSON.stringify of it overflows the stack (anyone who may publish to
    // the dead-letter exchange can plant one).
    const depth = 30_000;
    const body = `{"id":"e-4","orderId":"${footprint.orderIds[0]}","data":{"x":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}}`;
    const copy = scrubbedCopy(letter(body), 'C1', footprint)!;
    expect(copy.content.length).toBe(0);
  });

  it('looks for the address an event of the customer holds everywhere in it, when the database knows none', () => {
    const none = { orderIds: [], emails: [] };
    const forged = {
      id: 'e-5',
      orderId: '3c1d3f7e-0000-4000-8000-000000000000',
      data: { customerId: 'C1', email: 'ghost@example.net', extra: { note: 'write to ghost@example.net' } },
    };
    const copy = scrubbedCopy(
      letter(forged, { 'x-death-reason': 'bounced: ghost@example.net' }),
      'C1',
      none,
    )!;
    expect(copy.content.length).toBe(0); // still held it after its fields were scrubbed
    expect(copy.options.headers?.['x-death-reason']).toBe('bounced: (erased)');
  });

  it('leaves a letter about someone else alone', () => {
    expect(
      scrubbedCopy(letter({ id: 'e-3', data: { email: 'ann@example.com' } }), 'C1', footprint),
    ).toBeUndefined();
  });
});
