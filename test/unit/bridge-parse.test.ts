import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PoisonMessageError } from '../../lib/amqp.js';
import { buildEvent } from '../../lib/events.js';
import { parseOrderPlaced } from '../../workers/bridge.js';

const valid = () =>
  buildEvent('order.placed', {
    id: randomUUID(),
    orderId: randomUUID(),
    correlationId: 'corr-1',
    data: { customerId: 'C100', email: 'a@example.com', items: [], total: '1.00', currency: 'USD' },
  });

const body = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('parseOrderPlaced', () => {
  it('accepts the envelope the API writes', () => {
    const event = valid();
    expect(parseOrderPlaced(body(event))).toMatchObject({
      orderId: event.orderId,
      correlationId: 'corr-1',
      data: { customerId: 'C100' },
    });
  });

  it('rejects a body that is not JSON as poison', () => {
    expect(() => parseOrderPlaced(Buffer.from('{nope'))).toThrow(PoisonMessageError);
    expect(() => parseOrderPlaced(Buffer.from('{nope'))).toThrow(/body is not JSON/);
  });

  it('names every invalid field', () => {
    const event = { ...valid(), orderId: 'x', correlationId: '', data: {} };
    let error: unknown;
    try {
      parseOrderPlaced(body(event));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(PoisonMessageError);
    expect((error as Error).message).toMatch(/orderId/);
    expect((error as Error).message).toMatch(/correlationId/);
    expect((error as Error).message).toMatch(/data\.customerId/);
  });

  it('rejects another event type routed here by mistake', () => {
    expect(() => parseOrderPlaced(body({ ...valid(), type: 'payment.completed' }))).toThrow(/type/);
  });
});
