import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PoisonMessageError } from '../../lib/amqp/consumer.js';
import { buildEvent } from '../../lib/events.js';
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
