/**
 * Publishing without a broker: the properties every event carries, and a publish that can never be
 * confirmed (nothing listens on port 1) failing within its timeout instead of hanging.
 */
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { PublishTimeoutError, createEventPublisher, eventPublishOptions } from '../../lib/amqp/publisher.js';
import { connectAmqp } from '../../lib/amqp/connection.js';
import { deliveryCount } from '../../lib/amqp/consumer.js';

const logger = pino({ level: 'silent' });

describe('eventPublishOptions', () => {
  it('sets messageId, type, correlationId, content type, persistence and a timestamp in seconds', () => {
    const occurredAt = new Date('2030-01-02T03:04:05.678Z');
    expect(
      eventPublishOptions(
        { id: 'e1', type: 'order.placed', correlationId: 'c1', occurredAt, headers: { a: 1 } },
        'app',
      ),
    ).toEqual({
      messageId: 'e1',
      type: 'order.placed',
      correlationId: 'c1',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      persistent: true,
      timestamp: Math.floor(occurredAt.getTime() / 1000),
      headers: { a: 1 },
      appId: 'app',
    });
  });
});

describe('deliveryCount', () => {
  it('reads the quorum queue header, 0 when absent or garbage', () => {
    expect(deliveryCount({ properties: { headers: { 'x-delivery-count': 3 } } } as never)).toBe(3);
    expect(deliveryCount({ properties: { headers: {} } } as never)).toBe(0);
    expect(deliveryCount({ properties: { headers: undefined } } as never)).toBe(0);
    expect(deliveryCount({ properties: { headers: { 'x-delivery-count': 'x' } } } as never)).toBe(0);
  });
});

describe('createEventPublisher', () => {
  it('fails a publish within the timeout when the broker is unreachable', async () => {
    const amqp = connectAmqp(
      { AMQP_URL: 'amqp://guest:guest@127.0.0.1:1' },
      { name: 'unit-timeout', logger },
    );
    const publisher = createEventPublisher(amqp, { exchange: 'unit.never', timeoutMs: 200, logger });
    try {
      const started = Date.now();
      const outcome = publisher.publish({ id: 'e1', type: 'order.placed' }, Buffer.from('{}'));
      await expect(outcome).rejects.toBeInstanceOf(PublishTimeoutError);
      await expect(outcome).rejects.toThrow(/no publisher confirm for event e1 within 200 ms/);
      expect(Date.now() - started).toBeLessThan(1500);
    } finally {
      await publisher.close();
      await amqp.close();
    }
  });
});
