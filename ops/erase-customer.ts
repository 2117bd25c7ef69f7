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
 * an empty body: it cannot be scrubbed field by field, nor told whose it is; so is an event still
 * naming them after its fields were scrubbed. An event of another customer's order is left alone,
 * even when it holds an address this customer used too (`otherCustomers` in the queue's item). The
 * copies go to the DLQ's tail. A copy keeps the trust of the message it replaces, no more: one a
 * trusted producer sent is published under the operator's login (as a re-drive would), so `dlq
 * redrive` can still move it; any other without a sender, so it stays untrusted. Addresses are
 * matched whole (erasing ann@example.co leaves ann@example.com alone).
 *
 * A customer id with no orders still has the dead letters naming it (by its customer id) scrubbed:
 * events of another deployment's orders, or forged ones, may carry the person's data. One with no
 * orders and no such dead letter is reported `not-found` (exit 1): ids are exact, and an erasure
 * that matched nothing must not read as done. Refused while one of the customer's orders is still under
 * way (its saga may still need the address to send the customer its e-mail): not final in the
 * database, or its saga still running in Temporal (it records a failed or cancelled order's status
 * before the e-mail that says so). Refused under a broker login that is not trusted (as `dlq
 * redrive` is). Idempotent: run it again after a failure. The dead letters are scrubbed before the
 * database is erased, because finding them needs the addresses the database still holds: a run that
 * fails in the dead-letter step has erased nothing yet, and the next run finds every address again
 * (the database part is matched by customer id). A run after a whole erasure (for dead letters that
 * came since) takes the addresses from the customer's own dead-lettered events instead, for every
 * message of their DLQ. `--dry-run` says what would be erased and scrubbed and changes nothing.
 */
import type { Client } from '@temporalio/client';
import type { ConfirmChannel, GetMessage, Options } from 'amqplib';
import type { ChannelModel } from 'amqplib';
import { CUSTOMER_ID, ORDER_ID } from '../domain/order.js';
import { ERASED, scrubEvent } from '../domain/personal-data.js';
import type { Logger } from '../lib/logger.js';
import { customerFootprint, eraseCustomerData, orderOwner, type CustomerFootprint } from '../db/erasure.js';
import { withRolledBackTransaction, withTransaction, type Pool } from '../db/pool.js';
import { amqpUser } from '../lib/amqp/connection.js';
import { eachDeadLetterQueue, giveBack, originalSender, type DlqDeps } from './dlq.js';
import { listRuns } from './select.js';
import { SEARCH_ATTRIBUTES, SETTLE_WORKFLOW_TYPE, WORKFLOW_TYPE } from '../workflows/contract.js';
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
  /** Temporal: an order saga still running for the customer refuses the erasure. */
  client: Client;
  /** As for `dlq redrive` (DlqDeps): the queues, who reads each, and whose messages are trusted. */
  config: DlqDeps['config'];
  logger: Logger;
  progress?: Progress;
}

export interface EraseCustomerOptions {
  /**
   * Says what would be erased and changes nothing: the same refusals, the dead letters that would be
   * scrubbed (taken and handed back), and the database rows the erasure's own statements would touch
   * (run in a transaction that is rolled back).
   */
  dryRun?: boolean;
}

export async function eraseCustomer(
  deps: EraseCustomerDeps,
  customerId: string,
  { dryRun = false }: EraseCustomerOptions = {},
): Promise<CommandResult> {
  if (!CUSTOMER_ID.test(customerId))
    throw new UsageError(
      `not a customer id: ${JSON.stringify(customerId)} (letters, digits and . _ : -, as in customer_id, e.g. C100)`,
    );
  const progress = deps.progress ?? noProgress;
  const command = dryRun ? 'erase-customer --dry-run' : 'erase-customer';
  /** The command's one item when it does nothing: not found, or refused with the reason. */
  const endWith = (outcome: string, reason: string, details?: Record<string, unknown>): CommandResult => {
    const item: ItemResult = { id: customerId, ok: false, outcome, reason, ...(details ? { details } : {}) };
    progress.advance(item);
    return commandResult(command, [item]);
  };
  const refusal = (footprint: CustomerFootprint): CommandResult =>
    endWith(
      'refused',
      `orders still under way: ${footprint.openOrderIds.join(', ')}; their saga may still e-mail the ` +
        'customer. Erase once they have ended (cancel them first if the customer asked to stop)',
      { orders: footprint.orderIds.length, openOrders: footprint.openOrderIds },
    );
  const footprint = await withTransaction(deps.pool, (tx) => customerFootprint(tx, customerId));
  if (footprint.openOrderIds.length > 0) return refusal(footprint);
  // A final status is not an ended saga: the saga records PAYMENT_FAILED, CANCELLED or OUT_OF_STOCK
  // before the e-mail that tells the customer, and that e-mail needs the address.
  const running = footprint.orderIds.length > 0 ? await runningOrderWorkflows(deps.client, customerId) : [];
  if (running.length > 0) return refusal({ ...footprint, openOrderIds: running });
  const operator = amqpUser(deps.config.AMQP_URL ?? '');
  const trusted = deps.config.AMQP_TRUSTED_PUBLISHERS;
  // As `dlq redrive` refuses: a trusted dead letter copied under this login would lose its trust.
  if (trusted !== undefined && !trusted.includes(operator))
    return endWith(
      'refused',
      `your broker login ${operator} is not one of AMQP_TRUSTED_PUBLISHERS (${trusted.join(', ')}): the ` +
        "scrubbed copies of trusted dead letters could no longer be re-driven; run it with the operators' login",
    );

  // The dead letters first, while the database still knows the addresses to look for.
  const scrubs = await scrubDeadLetters(deps, customerId, footprint, { operator, trusted, dryRun });

  if (footprint.orderIds.length === 0) {
    // No orders here, yet dead letters may name the customer (events of another deployment's orders,
    // or forged ones): matched by their customer id, theirs to erase too. Nothing at all: not found.
    if (!scrubs.some((item) => Number(item.details?.scrubbed) > 0))
      return endWith(
        'not-found',
        'no orders of this customer and no dead letter naming them: nothing erased (customer ids are ' +
          'exact, letters case included)',
      );
    const none: ItemResult = {
      id: customerId,
      ok: true,
      outcome: 'no-orders',
      reason: `no orders of this customer in the database; dead letters naming them ${dryRun ? 'would be' : 'were'} scrubbed`,
    };
    if (!dryRun) deps.logger.info({ customerId }, 'customer data erased from the dead letters (no orders)');
    for (const item of [none, ...scrubs]) progress.advance(item);
    return commandResult(command, [none, ...scrubs]);
  }

  const database = await (dryRun ? withRolledBackTransaction : withTransaction)(deps.pool, async (tx) => {
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
    outcome: dryRun ? 'would-erase' : 'erased',
    details: { ...database.counts, ordersOfCustomer: database.orders },
  };
  if (!dryRun) deps.logger.info({ customerId, ...database.counts }, 'customer data erased from the database');
  for (const item of [erased, ...scrubs]) progress.advance(item);
  return commandResult(command, [erased, ...scrubs]);
}

/**
 * Replaces each dead letter about the customer with its scrubbed copy, one item per DLQ. An event of
 * another customer's order is theirs, even when it holds an address this customer used too (a
 * client chooses the address it orders with): left as it is, unless it holds more of this customer
 * than that (their id, an order of theirs, an address that order never had: bytes anyone who could
 * publish chose).
 */
async function scrubDeadLetters(
  deps: EraseCustomerDeps,
  customerId: string,
  footprint: CustomerFootprint,
  {
    operator,
    trusted,
    dryRun,
  }: { operator: string; trusted: readonly string[] | undefined; dryRun: boolean },
): Promise<ItemResult[]> {
  const scrubs: ItemResult[] = [];
  await eachDeadLetterQueue({ ...deps, progress: noProgress }, {}, async ({ channel, dlq, reader, take }) => {
    const held: GetMessage[] = [];
    const replaced = new Set<GetMessage>();
    let scrubbed = 0;
    let otherCustomers = 0;
    try {
      for (let n = 0; n < take; n++) {
        const msg = await channel.get(dlq, { noAck: false });
        if (!msg) break;
        held.push(msg);
      }
      // The addresses the customer's own events here carry count as theirs for every message of the
      // DLQ: a run after an earlier erasure finds none in the database, which nulled them.
      const known = {
        ...footprint,
        emails: [...new Set([...footprint.emails, ...carriedAddresses(held, customerId, footprint)])],
      };
      for (const msg of held) {
        const named = otherOrderNamed(msg.content, known);
        if (named !== undefined) {
          const owner = await orderOwner(deps.pool, named);
          if (
            owner !== undefined &&
            owner.customerId !== customerId &&
            onlyTheirs(msg.content, owner, customerId, known)
          ) {
            otherCustomers++;
            continue;
          }
        }
        const sender = originalSender(msg, reader);
        const copy = scrubbedCopy(msg, customerId, known, {
          userId: sender !== undefined && trusted?.includes(sender) ? operator : undefined,
        });
        if (!copy) continue;
        scrubbed++; // or would be, in a dry run
        if (dryRun) continue;
        await publishConfirmed(channel, dlq, copy.content, copy.options);
        channel.ack(msg);
        replaced.add(msg);
      }
    } finally {
      giveBack(
        channel,
        held.filter((msg) => !replaced.has(msg)),
      );
    }
    scrubs.push({
      id: dlq,
      ok: true,
      outcome: dryRun ? 'would-scrub' : 'scrubbed',
      details: { scrubbed, untouched: held.length - scrubbed, otherCustomers },
    });
  });
  return scrubs;
}

/**
 * The orders of the customer with a saga or a settlement that Temporal lists as running (its
 * visibility: a moment behind): either may still e-mail the customer (a settlement that finishes a
 * cancel sends the cancel's e-mail, waiting out a mail outage as long as it lasts).
 */
async function runningOrderWorkflows(client: Client, customerId: string): Promise<string[]> {
  // Quoted as is: CUSTOMER_ID allows no quote or backslash.
  const query = `ExecutionStatus = "Running" AND ${SEARCH_ATTRIBUTES.CustomerId.name} = "${customerId}"`;
  const runs = await listRuns(client, query, { types: [WORKFLOW_TYPE, SETTLE_WORKFLOW_TYPE] });
  return [...new Set(runs.map((run) => run.orderId))];
}

/** The addresses events in `messages` carry for the customer: naming them, or an order of theirs. */
function carriedAddresses(
  messages: readonly GetMessage[],
  customerId: string,
  footprint: Pick<CustomerFootprint, 'orderIds'>,
): string[] {
  return messages.flatMap((msg) => {
    let event: { orderId?: unknown; data?: { customerId?: unknown; email?: unknown } } | null;
    try {
      event = JSON.parse(msg.content.toString('utf8')) as typeof event;
    } catch {
      return [];
    }
    const email = event?.data?.email;
    const theirs =
      event?.data?.customerId === customerId ||
      footprint.orderIds.includes(String(event?.orderId).toLowerCase());
    return theirs && typeof email === 'string' && email !== '' ? [email] : [];
  });
}

/** The order an event in `content` names, when it is not one of the customer's (an id, not checked). */
export function otherOrderNamed(
  content: Buffer,
  footprint: Pick<CustomerFootprint, 'orderIds'>,
): string | undefined {
  let orderId: unknown;
  try {
    orderId = (JSON.parse(content.toString('utf8')) as { orderId?: unknown } | null)?.orderId;
  } catch {
    return undefined; // not an event: whose it is cannot be told
  }
  if (typeof orderId !== 'string' || !ORDER_ID.test(orderId)) return undefined;
  const id = orderId.toLowerCase();
  return footprint.orderIds.includes(id) ? undefined : id;
}

/**
 * Whether the event of another customer's order (`owner`) holds nothing of this customer but what
 * that order holds itself: not their customer id, none of their order ids, and of their addresses
 * only the order's own.
 */
function onlyTheirs(
  content: Buffer,
  owner: { email: string | null },
  customerId: string,
  footprint: Pick<CustomerFootprint, 'orderIds' | 'emails'>,
): boolean {
  const text = content.toString('utf8');
  const data = (JSON.parse(text) as { data?: { customerId?: unknown } }).data;
  if (data?.customerId === customerId) return false;
  if (footprint.orderIds.some((id) => text.includes(id))) return false;
  const theirs = owner.email?.toLowerCase();
  return footprint.emails.every(
    (email) => email.toLowerCase() === theirs || addressPattern([email])?.test(text) !== true,
  );
}

/**
 * The message to put back in the DLQ instead of `msg`, or undefined when it is not about the customer.
 * `userId`: the login to publish it under, given only when the original's sender was trusted.
 */
export function scrubbedCopy(
  msg: Pick<GetMessage, 'content' | 'properties'>,
  customerId: string,
  footprint: Pick<CustomerFootprint, 'orderIds' | 'emails'>,
  { userId }: { userId?: string | undefined } = {},
): { content: Buffer; options: Options.Publish } | undefined {
  const text = msg.content.toString('utf8');
  let event: unknown;
  try {
    event = JSON.parse(text);
  } catch {
    event = undefined;
  }
  const envelope = event as
    { orderId?: unknown; data?: { customerId?: unknown; email?: unknown } } | undefined;
  const isEvent = typeof envelope === 'object' && envelope !== null;
  // An event naming the customer by id holds their address too, one the database may not know (an
  // order it never had, or one erased before): looked for everywhere else in the message as well.
  const ownAddress =
    isEvent && envelope.data?.customerId === customerId && typeof envelope.data?.email === 'string'
      ? [envelope.data.email]
      : [];
  const known = [...footprint.emails, ...ownAddress];
  const addresses = addressPattern(known);
  const emails = new Set(known.map((e) => e.toLowerCase()));
  const mentions = (s: string) =>
    addresses?.test(s) === true || footprint.orderIds.some((id) => s.includes(id));
  const about = isEvent
    ? footprint.orderIds.includes(String(envelope.orderId)) ||
      envelope.data?.customerId === customerId ||
      emails.has(String(envelope.data?.email).toLowerCase()) ||
      mentions(text)
    : mentions(text);
  if (!about) return undefined;
  // An event is scrubbed field by field; if an address is still in it (in a field no event has, or
  // a `data` that is not an object), or the body is not an event at all, nothing of it is kept.
  const scrubbed = isEvent ? stringified(scrubEvent(event)) : undefined;
  const content =
    scrubbed !== undefined && addresses?.test(scrubbed) !== true ? Buffer.from(scrubbed) : Buffer.alloc(0);
  // Still a dead letter, with its reason and origin; the addresses gone from the headers too.
  const headers = Object.fromEntries(
    Object.entries(msg.properties.headers ?? {})
      .filter(([key]) => key !== 'x-delivery-count')
      .map(([key, value]) => [key, typeof value === 'string' ? scrubText(value, known) : value]),
  );
  headers['x-erased-at'] = new Date().toISOString();
  const p = msg.properties;
  const options: Options.Publish = {
    headers,
    persistent: true,
    mandatory: true,
    ...(userId ? { userId } : {}),
  };
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

/**
 * JSON text of a parsed dead letter, or undefined when it cannot be written back: JSON.parse takes
 * nesting tens of thousands deep that JSON.stringify overflows the stack on, and a body anyone who
 * may publish chose must not stop every later erasure.
 */
function stringified(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined;
  }
}

function scrubText(value: string, emails: string[]): string {
  const addresses = addressPattern(emails, 'g');
  return addresses === undefined ? value : value.replace(addresses, ERASED);
}

/**
 * The addresses as whole addresses, any case: not inside a longer one (`ann@example.co` is not in
 * `ann@example.com` or `joann@example.co`), a full stop after one still ending it. Rarer local-part
 * characters (`=`, `'`, `/`, …) count as delimiters: `to=ann@example.co` is hers, and scrubbing an
 * `o'ann@example.co` too is the safer mistake.
 */
export function addressPattern(emails: readonly string[], flags = ''): RegExp | undefined {
  if (emails.length === 0) return undefined;
  const escaped = emails.map((e) => e.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
  return new RegExp(`(?<![\\w.+-])(?:${escaped})(?![\\w-]|\\.[\\w-])`, `i${flags}`);
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
