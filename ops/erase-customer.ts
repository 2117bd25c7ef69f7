/**
 * `orders erase-customer <id>`: removes one customer's personal data (their e-mail addresses and
 * the free text they wrote) from everything the system keeps: the orders (which keep their amounts,
 * lines, statuses, payments and timeline), their e-mails, their outbox rows, the analytics record of
 * their cancel, and the dead-letter queues.
 *
 * Dead letters about the customer are re-published scrubbed into the same DLQ, and the original is
 * acked, rather than dropped: a dead letter is the record of something that failed (the alert
 * watches it, the reason and the order id tell an operator what to fix, and it can still be
 * re-driven), and nothing in it needs the person's data. A body that is not an event (malformed,
 * which is often why it is there) and that holds one of their addresses or order ids is replaced by
 * an empty body: it cannot be scrubbed field by field. The copies go to the DLQ's tail.
 *
 * Refused while one of the customer's orders is still under way: its saga may still need the address
 * to send the customer its e-mail. Idempotent: run it again after a failure. The dead letters are
 * scrubbed before the database is erased, because finding them needs the addresses the database
 * still holds: a run that fails in the dead-letter step has erased nothing yet, and the next run
 * finds every address again (the database part is matched by customer id).
 */
import type { ConfirmChannel, GetMessage, Options } from 'amqplib';
import type { ChannelModel } from 'amqplib';
import { ERASED, scrubEvent } from '../domain/personal-data.js';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import { customerFootprint, eraseCustomerData, type CustomerFootprint } from '../db/erasure.js';
import { withTransaction, type Pool } from '../db/pool.js';
import { eachDeadLetterQueue, giveBack } from './dlq.js';
import {
  commandResult,
  noProgress,
  UsageError,
  type CommandResult,
  type ItemResult,
  type Progress,
} from './result.js';

export interface EraseCustomerDeps {
  pool: Pool;
  /** A plain amqplib connection; the caller opens and closes it. */
  connection: ChannelModel;
  config: Pick<Config, 'BRIDGE_QUEUE' | 'LOYALTY_QUEUE' | 'ANALYTICS_QUEUE'>;
  logger: Logger;
  progress?: Progress;
}

export async function eraseCustomer(deps: EraseCustomerDeps, customerId: string): Promise<CommandResult> {
  if (customerId.trim() === '') throw new UsageError('erase-customer takes a customer id, e.g. C100');
  const progress = deps.progress ?? noProgress;
  const refusal = (footprint: CustomerFootprint): CommandResult => {
    const item: ItemResult = {
      id: customerId,
      ok: false,
      outcome: 'refused',
      reason:
        `orders still under way: ${footprint.openOrderIds.join(', ')}; their saga may still e-mail the ` +
        'customer. Erase once they have ended (cancel them first if the customer asked to stop)',
      details: { orders: footprint.orderIds.length, openOrders: footprint.openOrderIds },
    };
    progress.advance(item);
    return commandResult('erase-customer', [item]);
  };
  const footprint = await withTransaction(deps.pool, (tx) => customerFootprint(tx, customerId));
  if (footprint.openOrderIds.length > 0) return refusal(footprint);

  // The dead letters first, while the database still knows the addresses to look for.
  const scrubs: ItemResult[] = [];
  await eachDeadLetterQueue({ ...deps, progress: noProgress }, {}, async ({ channel, dlq, take }) => {
    const kept: GetMessage[] = [];
    let scrubbed = 0;
    try {
      for (let n = 0; n < take; n++) {
        const msg = await channel.get(dlq, { noAck: false });
        if (!msg) break;
        const copy = scrubbedCopy(msg, customerId, footprint);
        if (!copy) {
          kept.push(msg);
          continue;
        }
        await publishConfirmed(channel, dlq, copy.content, copy.options);
        channel.ack(msg);
        scrubbed++;
      }
    } finally {
      giveBack(channel, kept);
    }
    scrubs.push({ id: dlq, ok: true, outcome: 'scrubbed', details: { scrubbed, untouched: kept.length } });
  });

  const database = await withTransaction(deps.pool, async (tx) => {
    // Taken again under the transaction: an order placed meanwhile is erased (or refuses) too.
    const now = await customerFootprint(tx, customerId);
    if (now.openOrderIds.length > 0) return { kind: 'refused' as const, footprint: now };
    return {
      kind: 'erased' as const,
      counts: await eraseCustomerData(tx, now.orderIds),
      orders: now.orderIds.length,
    };
  });
  if (database.kind === 'refused') return refusal(database.footprint);
  const erased: ItemResult = {
    id: customerId,
    ok: true,
    outcome: 'erased',
    details: { ...database.counts, ordersOfCustomer: database.orders },
  };
  deps.logger.info({ customerId, ...database.counts }, 'customer data erased from the database');
  for (const item of [erased, ...scrubs]) progress.advance(item);
  return commandResult('erase-customer', [erased, ...scrubs]);
}

/** The message to put back in the DLQ instead of `msg`, or undefined when it is not about the customer. */
export function scrubbedCopy(
  msg: Pick<GetMessage, 'content' | 'properties'>,
  customerId: string,
  footprint: Pick<CustomerFootprint, 'orderIds' | 'emails'>,
): { content: Buffer; options: Options.Publish } | undefined {
  const text = msg.content.toString('utf8');
  const mentions = (s: string) =>
    footprint.emails.some((e) => s.includes(e)) || footprint.orderIds.some((id) => s.includes(id));
  let event: unknown;
  try {
    event = JSON.parse(text);
  } catch {
    event = undefined;
  }
  const envelope = event as
    { orderId?: unknown; data?: { customerId?: unknown; email?: unknown } } | undefined;
  const isEvent = typeof envelope === 'object' && envelope !== null;
  const about = isEvent
    ? footprint.orderIds.includes(String(envelope.orderId)) ||
      envelope.data?.customerId === customerId ||
      footprint.emails.includes(String(envelope.data?.email)) ||
      mentions(text)
    : mentions(text);
  if (!about) return undefined;
  const content = isEvent ? Buffer.from(JSON.stringify(scrubEvent(event))) : Buffer.alloc(0);
  // Still a dead letter, with its reason and origin; the addresses gone from the headers too.
  const headers = Object.fromEntries(
    Object.entries(msg.properties.headers ?? {})
      .filter(([key]) => key !== 'x-delivery-count')
      .map(([key, value]) => [key, typeof value === 'string' ? scrubText(value, footprint.emails) : value]),
  );
  headers['x-erased-at'] = new Date().toISOString();
  const p = msg.properties;
  const options: Options.Publish = { headers, persistent: true, mandatory: true };
  for (const key of [
    'contentType',
    'contentEncoding',
    'correlationId',
    'messageId',
    'timestamp',
    'type',
    'appId',
  ] as const) {
    if (p[key] !== undefined && p[key] !== null) Object.assign(options, { [key]: p[key] });
  }
  return { content, options };
}

function scrubText(value: string, emails: string[]): string {
  return emails.reduce((text, email) => text.split(email).join(ERASED), value);
}

function publishConfirmed(channel: ConfirmChannel, queue: string, content: Buffer, options: Options.Publish) {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no publisher confirm within 10 s for the scrubbed copy into ${queue}`)),
      10_000,
    );
    channel.publish('', queue, content, options, (err: unknown) => {
      clearTimeout(timer);
      if (err) reject(new Error(`the broker refused the scrubbed copy into ${queue}: ${String(err)}`));
      else resolve();
    });
  });
}
