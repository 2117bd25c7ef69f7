import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PoisonMessageError } from '../../lib/amqp/consumer.js';
import { buildEvent } from '../../lib/events.js';
import { parseOrderEvent } from '../../subscribers/analytics/consumer.js';
import { parseLoyaltyEvent } from '../../subscribers/loyalty/consumer.js';
import { parseRunRequest } from '../../workers/bridge.js';

const valid = () =>
  buildEvent('order.placed', {
    id: randomUUID(),
    orderId: randomUUID(),
    correlationId: 'corr-1',
    data: { customerId: 'C100', email: 'a@example.com', items: [], total: '1.00', currency: 'USD' },
  });

const body = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('parseRunRequest', () => {
  it('accepts the envelope the API writes', () => {
    const event = valid();
    expect(parseRunRequest(body(event))).toMatchObject({ orderId: event.orderId, correlationId: 'corr-1' });
  });

  it('accepts a retry, which names the run to start', () => {
    const event = buildEvent('order.retried', {
      id: randomUUID(),
      orderId: randomUUID(),
      correlationId: 'corr-1',
      data: { run: 2, customerId: 'C100', previousStatus: 'PAYMENT_FAILED', reason: 'gateway fixed' },
    });
    expect(parseRunRequest(body(event))).toMatchObject({ type: 'order.retried', data: { run: 2 } });
    expect(() => parseRunRequest(body({ ...event, data: { run: 1 } }))).toThrow(/data\.run/);
  });

  it('rejects a body that is not JSON as poison', () => {
    expect(() => parseRunRequest(Buffer.from('{nope'))).toThrow(PoisonMessageError);
    expect(() => parseRunRequest(Buffer.from('{nope'))).toThrow(/body is not JSON/);
  });

  it('names every invalid field', () => {
    const event = { ...valid(), orderId: 'x', correlationId: '', data: {} };
    let error: unknown;
    try {
      parseRunRequest(body(event));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(PoisonMessageError);
    expect((error as Error).message).toMatch(/orderId/);
    expect((error as Error).message).toMatch(/correlationId/);
  });

  it('rejects another event type routed here by mistake', () => {
    expect(() => parseRunRequest(body({ ...valid(), type: 'payment.completed' }))).toThrow(/type/);
  });
});

describe('every consumer reads the event version it knows, and no other', () => {
  const completed = () =>
    buildEvent('payment.completed', {
      id: randomUUID(),
      orderId: randomUUID(),
      correlationId: 'corr-1',
      data: { amount: '12.00', currency: 'USD', reference: 'ref-1', customerId: 'C100' },
    });
  const parsers = {
    bridge: [parseRunRequest, valid],
    analytics: [parseOrderEvent, completed],
    loyalty: [parseLoyaltyEvent, completed],
  } as const;

  for (const [consumer, [parse, event]] of Object.entries(parsers)) {
    it(`${consumer}: version 1 is read; 2, a string or none is poison, naming the version`, () => {
      expect(parse(body(event()))).toMatchObject({ version: 1 });
      for (const version of [2, 99, '1', undefined]) {
        expect(() => parse(body({ ...event(), version }))).toThrow(PoisonMessageError);
        expect(() => parse(body({ ...event(), version }))).toThrow(/version: version .* is not supported/);
      }
    });
  }
});
