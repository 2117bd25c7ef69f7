/**
 * Whom `dlq redrive` takes a dead letter to be from (ops/dlq.ts originalSender): the sender a
 * consumer recorded is believed only on a copy published under the login that reads the queue;
 * anyone else able to publish to the dead-letter exchange can write the same header.
 */
import type { GetMessage } from 'amqplib';
import { describe, expect, test } from 'vitest';
import { DEAD_LETTER_HEADERS } from '../../lib/amqp/consumer.js';
import { originalSender } from '../../ops/dlq.js';

const READER = 'acme-loyalty';
const message = (userId: string | undefined, recorded?: string | Buffer): Pick<GetMessage, 'properties'> =>
  ({
    properties: {
      ...(userId === undefined ? {} : { userId }),
      headers: recorded === undefined ? {} : { [DEAD_LETTER_HEADERS.userId]: recorded },
    },
  }) as unknown as Pick<GetMessage, 'properties'>;

describe('a dead letter’s sender', () => {
  test('is the one the queue’s reader recorded, on a copy the reader published', () => {
    expect(originalSender(message(READER, 'acme-outbox'), READER)).toBe('acme-outbox');
    expect(originalSender(message(READER, Buffer.from('acme-outbox')), READER)).toBe('acme-outbox');
  });

  test('is whoever published the copy when another login wrote the record', () => {
    // acme-analytics may publish to the shared dead-letter exchange, so it could plant this in
    // loyalty's DLQ: it stays acme-analytics' message, untrusted.
    expect(originalSender(message('acme-analytics', 'acme-outbox'), READER)).toBe('acme-analytics');
    expect(originalSender(message(undefined, 'acme-outbox'), READER)).toBeUndefined();
  });

  test('is the message’s own user_id when nothing was recorded (the broker’s own dead-lettering)', () => {
    expect(originalSender(message('acme-outbox'), READER)).toBe('acme-outbox');
    expect(originalSender(message(READER, ''), READER)).toBe(READER);
  });

  test('is nobody on the reader’s own copy that recorded no sender: the original had none', () => {
    // An acceptance run saw such a message refused as sent by acme-loyalty; with one shared login
    // (the reader also the trusted publisher), a forged message would have passed for the outbox's.
    const copy = {
      properties: { userId: READER, headers: { [DEAD_LETTER_HEADERS.reason]: 'PoisonMessageError: …' } },
    } as unknown as Pick<GetMessage, 'properties'>;
    expect(originalSender(copy, READER)).toBeUndefined();
  });

  test('believes no record when the queue’s reader is not known', () => {
    expect(originalSender(message(READER, 'acme-outbox'), undefined)).toBe(READER);
  });
});
