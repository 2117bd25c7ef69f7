/**
 * `orders dlq list | show | redrive | drop`: the dead-letter queues `<queue>.dlq` of the consumer queues
 * (every consumer's, lib/amqp/consumer.ts). A message lands there with its reason
 * in `x-death-reason` when it was malformed or kept failing; once the cause is fixed, redrive puts
 * it back on its queue, unchanged, for its consumer to take again.
 *
 * Reading without taking: `show` (and `redrive --dry-run`) basic.get the messages without acking,
 * hold them all (so each get returns the next one, not the same one again), then return them with
 * basic.nack requeue=true. Why nack and not reject: since RabbitMQ 4.3 a quorum queue counts only
 * reject (and a failed consumer) as a failed delivery, so nack'ed messages do not move toward the
 * queue's delivery limit and cannot be dropped as poison by being looked at. On 3.x every return is
 * counted, harmlessly: the DLQs are declared without a delivery limit. (4.0 to 4.2 count it and apply
 * a default limit of 20; README "When an order fails" says what to set there.) Order is kept.
 *
 * Redrive is at least once: each message is published to its original queue through the default
 * exchange (only that queue gets it, not every subscriber of the topic), mandatory and confirmed,
 * and only then acked from the DLQ. A crash between the two leaves a copy in both places, which the
 * consumers tolerate (they deduplicate by message id, the event id). So a DLQ may hold two copies of
 * one event (the outbox publishes at least once too): redrive sends back the first and removes the
 * others, and `--dry-run` says so.
 *
 * Drop removes named dead letters for good: one whose cause will never go away (an event for an
 * order this database never had, a body an erasure emptied), which redrive would only send round
 * again and the DLQ alert would keep firing on. Only by message id, one DLQ at a time, never all;
 * never by a position (it moves as messages come and go), and only copies of the first body an id
 * names (another body under that id is someone else's message).
 */
import type { Channel, ChannelModel, ConfirmChannel, GetMessage, MessageProperties, Options } from 'amqplib';
import { amqpUser } from '../lib/amqp/connection.js';
import { DEAD_LETTER_HEADERS } from '../lib/amqp/consumer.js';
import { dlqName } from '../lib/amqp/topology.js';
import { noteProblem } from '../domain/text.js';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import {
  commandResult,
  noProgress,
  UsageError,
  type CommandResult,
  type ItemResult,
  type Progress,
} from './result.js';

export interface DlqDeps {
  /** A plain amqplib connection; the caller opens and closes it. */
  connection: ChannelModel;
  /**
   * AMQP_URL names the operator's broker login, stamped as `user_id` on what a re-drive publishes;
   * AMQP_TRUSTED_PUBLISHERS, whose messages keep their trust through a re-drive; *_AMQP_USER, the
   * login that reads each queue, the only one whose record of a dead letter's sender is believed;
   * DLQ_REDRIVE_WINDOW_MS, how old a dead letter may be and still be re-driven.
   */
  config: Pick<Config, 'BRIDGE_QUEUE' | 'LOYALTY_QUEUE' | 'ANALYTICS_QUEUE' | 'DLQ_REDRIVE_WINDOW_MS'> &
    Partial<
      Pick<
        Config,
        | 'AMQP_URL'
        | 'AMQP_TRUSTED_PUBLISHERS'
        | 'BRIDGE_AMQP_USER'
        | 'LOYALTY_AMQP_USER'
        | 'ANALYTICS_AMQP_USER'
      >
    >;
  logger: Logger;
  progress?: Progress;
}

export interface DlqSelection {
  /** A consumer queue or its DLQ (`orders.bridge` or `orders.bridge.dlq`); all of them if absent. */
  queue?: string;
}

export interface DlqReadOptions extends DlqSelection {
  /**
   * At most this many messages in all. Default for redrive: every message present when it starts;
   * for show: SHOW_LIMIT (each one shown is held unacked until the end).
   */
  limit?: number;
}

export const SHOW_LIMIT = 100;

export interface RedriveOptions extends DlqReadOptions {
  /** Lists what would be moved and moves nothing. */
  dryRun?: boolean;
  /**
   * Also moves dead letters sent longer ago than DLQ_REDRIVE_WINDOW_MS: their consumer's dedupe
   * record may be pruned, and only each effect's own key (README "Retention") keeps a copy it had
   * applied from applying twice. The operator's call, for a message that would otherwise be lost.
   */
  pastWindow?: boolean;
  /** How long to wait for the broker to confirm each republished message. */
  confirmTimeoutMs?: number;
}

interface DeadLetterQueue {
  queue: string;
  dlq: string;
  /** The login that reads `queue` and dead-letters its messages (config *_AMQP_USER), if known. */
  reader: string | undefined;
}

/** The DLQs to act on. @throws UsageError for a queue that is not one of ours, naming those that are. */
export function resolveDeadLetterQueues(
  config: DlqDeps['config'],
  { queue }: DlqSelection = {},
): DeadLetterQueue[] {
  const all = (
    [
      [config.BRIDGE_QUEUE, config.BRIDGE_AMQP_USER],
      [config.LOYALTY_QUEUE, config.LOYALTY_AMQP_USER],
      [config.ANALYTICS_QUEUE, config.ANALYTICS_AMQP_USER],
    ] as const
  ).map(([queue, reader]) => ({ queue, dlq: dlqName(queue), reader }));
  if (queue === undefined) return all;
  const match = all.filter((q) => q.queue === queue || q.dlq === queue);
  if (match.length === 0)
    throw new UsageError(
      `unknown queue ${JSON.stringify(queue)}: --queue takes one of ${all.map((q) => `${q.queue} (or ${q.dlq})`).join(', ')}` +
        ' (the names come from BRIDGE_QUEUE, LOYALTY_QUEUE and ANALYTICS_QUEUE)',
    );
  return match;
}

// ---------------------------------------------------------------------------------------------------
// list

/** One item per DLQ with its message count; a DLQ not declared yet is listed as `absent`, empty. */
export async function listDeadLetters(deps: DlqDeps, selection: DlqSelection = {}): Promise<CommandResult> {
  const queues = resolveDeadLetterQueues(deps.config, selection);
  const progress = deps.progress ?? noProgress;
  progress.start(queues.length);
  const items: ItemResult[] = [];
  for (const { queue, dlq } of queues) {
    const state = await queueState(deps.connection, dlq);
    const item: ItemResult = state
      ? { id: dlq, ok: true, outcome: 'listed', details: { queue, dlq, ...state } }
      : {
          id: dlq,
          ok: true,
          outcome: 'absent',
          reason: `not declared on this broker yet (its consumer has never run here): nothing dead-lettered`,
          details: { queue, dlq, messages: 0, consumers: 0 },
        };
    items.push(item);
    progress.advance(item);
  }
  return commandResult('dlq list', items);
}

// ---------------------------------------------------------------------------------------------------
// show

/** One item per message, oldest first, each returned to the DLQ afterwards. */
export async function showDeadLetters(deps: DlqDeps, options: DlqReadOptions = {}): Promise<CommandResult> {
  const items: ItemResult[] = [];
  await eachDeadLetterQueue(
    deps,
    { limit: SHOW_LIMIT, ...options },
    async ({ channel, dlq, queue, take }) => {
      const held: GetMessage[] = [];
      try {
        for (let n = 0; n < take; n++) {
          const msg = await channel.get(dlq, { noAck: false });
          if (!msg) break;
          held.push(msg);
          const item: ItemResult = {
            id: messageKey(msg, dlq, n),
            ok: true,
            outcome: 'dead-lettered',
            details: { ...describeDeadLetter(msg, dlq, queue), body: bodyPreview(msg.content) },
          };
          items.push(item);
          deps.progress?.advance(item);
        }
      } finally {
        giveBack(channel, held);
      }
    },
  );
  return commandResult('dlq show', items);
}

// ---------------------------------------------------------------------------------------------------
// redrive

/**
 * Moves messages back onto the queue they were dead-lettered from (`x-original-queue`), each with
 * the same body and properties (message id, type, correlation id, …) and without the dead-letter
 * headers, so its consumer sees it as it was first published. One item per message; a second copy
 * of an event sent back just before it (same message id and body) is removed instead (`duplicate`).
 *
 * Each DLQ's messages are all taken (held unacked) before the first is sent back. A message this
 * command redrives and its consumer dead-letters again comes back behind them, so it is never taken
 * again in the same run (no loop: it stays for the next one, once its cause is fixed), and a message
 * id seen twice here is two copies that were both in the DLQ before anything was sent back, never
 * one copy coming round again. The dry run takes them the same way and decides the same.
 */
export async function redriveDeadLetters(
  deps: DlqDeps,
  options: RedriveOptions = {},
): Promise<CommandResult> {
  const items: ItemResult[] = [];
  const confirmTimeoutMs = options.confirmTimeoutMs ?? 10_000;
  const trust: RedriveTrust = {
    operator: amqpUser(deps.config.AMQP_URL ?? ''),
    publishers: deps.config.AMQP_TRUSTED_PUBLISHERS,
    requiredBy: new Set([deps.config.LOYALTY_QUEUE, deps.config.ANALYTICS_QUEUE]),
  };
  await eachDeadLetterQueue(deps, options, async ({ channel, dlq, queue, reader, take }) => {
    const held: GetMessage[] = [];
    const acked = new Set<GetMessage>();
    const sentBack = new Map<string, Buffer>();
    try {
      for (let n = 0; n < take; n++) {
        const msg = await channel.get(dlq, { noAck: false });
        if (!msg) break;
        held.push(msg);
      }
      for (const [n, msg] of held.entries()) {
        const item = await redriveOne(channel, msg, {
          dlq,
          queue,
          reader,
          n,
          sentBack,
          options,
          confirmTimeoutMs,
          trust,
          windowMs: deps.config.DLQ_REDRIVE_WINDOW_MS,
        });
        if (item.outcome === 'redriven' || item.outcome === 'duplicate') {
          channel.ack(msg);
          acked.add(msg);
        }
        items.push(item);
        deps.progress?.advance(item);
        if (item.outcome === 'redriven') deps.logger.info(item.details, 'dead letter redriven');
        if (item.outcome === 'duplicate') deps.logger.info(item.details, 'duplicate dead letter removed');
      }
    } finally {
      giveBack(
        channel,
        held.filter((msg) => !acked.has(msg)),
      );
    }
  });
  return commandResult(options.dryRun ? 'dlq redrive --dry-run' : 'dlq redrive', items);
}

export interface DropOptions {
  /** One consumer queue or its DLQ: drop acts on one DLQ only. */
  queue: string;
  /** The message ids to drop, as `dlq show` lists them (`<dlq>#<n>` for a message without one). */
  ids: readonly string[];
  /** Why, for the log: what an auditor reads about a message that is gone. */
  reason: string;
  /** Lists what would be dropped and drops nothing. */
  dryRun?: boolean;
}

/**
 * Removes the dead letters of one DLQ with the given message ids (every copy of each), logging each
 * with what `dlq show` says of it and the operator's reason. An id not found is an item `not-found`
 * (exit 1): ids are exact, and a drop that matched nothing must not read as done.
 */
export async function dropDeadLetters(deps: DlqDeps, options: DropOptions): Promise<CommandResult> {
  const ids = new Set(options.ids);
  if (ids.size === 0 || ids.has(''))
    throw new UsageError('--id names the message ids to drop, none empty (dlq show lists them)');
  const reason = options.reason.trim();
  if (reason === '') throw new UsageError('--reason must say why the messages are dropped');
  const problem = noteProblem(reason);
  if (problem !== undefined) throw new UsageError(`--reason ${problem}`);
  const [target] = resolveDeadLetterQueues(deps.config, { queue: options.queue });
  const positional = [...ids].filter((id) => id.startsWith(`${target!.dlq}#`));
  if (positional.length > 0)
    throw new UsageError(
      `${positional.join(', ')}: a position, not a message id (the message has none), and positions move ` +
        'as messages come and go; remove such a message in the management UI, where you see its body',
    );
  const items: ItemResult[] = [];
  const found = new Set<string>();
  await eachDeadLetterQueue(deps, { queue: target!.dlq }, async ({ channel, dlq, queue, take }) => {
    const held: GetMessage[] = [];
    const dropped = new Set<GetMessage>();
    /** The body of the first message of each id: only copies of it are dropped with it. */
    const firstBody = new Map<string, Buffer>();
    try {
      for (let n = 0; n < take; n++) {
        const msg = await channel.get(dlq, { noAck: false });
        if (!msg) break;
        held.push(msg);
        const id = messageKey(msg, dlq, n);
        if (!ids.has(id)) continue;
        found.add(id);
        const details = describeDeadLetter(msg, dlq, queue);
        const first = firstBody.get(id);
        if (first === undefined) firstBody.set(id, msg.content);
        const item: ItemResult =
          first !== undefined && !first.equals(msg.content)
            ? {
                id,
                ok: false,
                outcome: 'kept',
                reason:
                  'same message id as one before it but a different body: not a copy of the message named; ' +
                  'not dropped (inspect it with dlq show)',
                details,
              }
            : { id, ok: true, outcome: options.dryRun ? 'would-drop' : 'dropped', details };
        if (item.outcome === 'dropped') {
          channel.ack(msg);
          dropped.add(msg);
          // Not the body, nor the dead-letter reason (either may hold a customer's address).
          const { messageId, type, orderId, routingKey, attempts, deadLetteredAt } = details;
          deps.logger.warn(
            {
              dlq,
              messageId,
              type,
              orderId,
              routingKey,
              attempts,
              deadLetteredAt,
              operator: amqpUser(deps.config.AMQP_URL ?? ''),
              dropReason: reason,
            },
            'dead letter dropped',
          );
        }
        items.push(item);
        deps.progress?.advance(item);
      }
    } finally {
      giveBack(
        channel,
        held.filter((msg) => !dropped.has(msg)),
      );
    }
  });
  for (const id of ids) {
    if (found.has(id)) continue;
    const item: ItemResult = {
      id,
      ok: false,
      outcome: 'not-found',
      reason: `no dead letter with this message id in ${target!.dlq} (dlq show --queue ${target!.queue} lists them)`,
    };
    items.push(item);
    deps.progress?.advance(item);
  }
  return commandResult(options.dryRun ? 'dlq drop --dry-run' : 'dlq drop', items);
}

interface RedriveTrust {
  /** The operator's broker login, stamped as `user_id` on a trusted message. */
  operator: string;
  publishers: readonly string[] | undefined;
  /** The consumer queues that accept only trusted producers' messages (the subscribers'). */
  requiredBy: ReadonlySet<string>;
}

/**
 * Who first sent a dead letter, as the broker validated it. The consumer records it when it
 * dead-letters (`x-original-user-id`) on a copy it publishes under its own login (`user_id`, which
 * the broker validates); that record is believed only on a copy from `reader`, the login that reads
 * the queue: any other service allowed to publish to the dead-letter exchange could write the header
 * too. Without a believed record, the copy's own `user_id` is the sender (the broker's own
 * dead-lettering keeps the original message's).
 */
export function originalSender(
  msg: Pick<GetMessage, 'properties'>,
  reader: string | undefined,
): string | undefined {
  const own = msg.properties.userId as unknown;
  const copiedBy = typeof own === 'string' && own !== '' ? own : undefined;
  const recorded: unknown = msg.properties.headers?.[DEAD_LETTER_HEADERS.userId];
  if (reader !== undefined && copiedBy === reader) {
    if (typeof recorded === 'string' && recorded !== '') return recorded;
    if (Buffer.isBuffer(recorded) && recorded.length > 0) return recorded.toString('utf8');
    // The reader's own copy (it wrote why it dead-lettered it) records a sender whenever the original
    // had one: none recorded, none there was. Not the reader itself, which in a deployment of one
    // shared login is also the trusted publisher: a forged message would pass for the outbox's.
    if (msg.properties.headers?.[DEAD_LETTER_HEADERS.reason] !== undefined) return undefined;
  }
  return copiedBy;
}

async function redriveOne(
  channel: ConfirmChannel,
  msg: GetMessage,
  ctx: {
    dlq: string;
    queue: string;
    reader: string | undefined;
    n: number;
    /** The body of each message id sent back from this DLQ in this run (or that would be, in a dry run). */
    sentBack: Map<string, Buffer>;
    options: RedriveOptions;
    confirmTimeoutMs: number;
    trust: RedriveTrust;
    windowMs: number;
  },
): Promise<ItemResult> {
  const id = messageKey(msg, ctx.dlq, ctx.n);
  const details = describeDeadLetter(msg, ctx.dlq, ctx.queue);
  const target = details.originalQueue;
  const keep = (reason: string): ItemResult => ({ id, ok: false, outcome: 'kept', reason, details });
  if (target !== ctx.queue)
    return keep(
      `its x-original-queue is ${JSON.stringify(target)}, not ${ctx.queue} whose DLQ this is: ` +
        'not moved; move it by hand (management UI, "Move messages") if that is really where it belongs',
    );
  // Trust travels with the message, never further: one a trusted producer sent is published again
  // under the operator's own (broker-validated) login, which the subscribers trust too; one that
  // came from anyone else stays untrusted, and the subscribers that require trust would only
  // dead-letter it again.
  const sender = originalSender(msg, ctx.reader);
  const trusted = ctx.trust.publishers;
  const trustedSender = sender !== undefined && trusted !== undefined && trusted.includes(sender);
  if (ctx.trust.requiredBy.has(ctx.queue) && trusted) {
    if (!trustedSender) {
      const recordIgnored =
        msg.properties.headers?.[DEAD_LETTER_HEADERS.userId] === undefined
          ? ''
          : `; the sender recorded in its ${DEAD_LETTER_HEADERS.userId} is believed only on a copy published ` +
            `by ${ctx.reader ?? 'the login'} that reads ${ctx.queue} (config *_AMQP_USER)`;
      return keep(
        `not sent by a trusted producer (${sender ? `user_id ${sender}` : 'no user_id'}; trusted: ${trusted.join(', ')}): ` +
          `${ctx.queue}'s consumer accepts no other; not moved (inspect it with dlq show)${recordIgnored}`,
      );
    }
    if (!trusted.includes(ctx.trust.operator))
      return keep(
        `your broker login ${ctx.trust.operator} is not one of AMQP_TRUSTED_PUBLISHERS (${trusted.join(', ')}): ` +
          `${ctx.queue}'s consumer would refuse the message; re-drive with the operators' login`,
      );
  }
  // The consumers' dedupe records (processed_events) are kept for this window after an event and no
  // longer; past it, only each effect's own key stands between a re-driven copy and a second effect.
  const since = sentAt(msg);
  if (!ctx.options.pastWindow && since !== undefined && Date.now() - since.getTime() > ctx.windowMs)
    return keep(
      `sent ${since.toISOString()}, longer ago than DLQ_REDRIVE_WINDOW_MS (${ctx.windowMs} ms): its ` +
        "consumer's record of having applied it may be pruned already; not moved (inspect it with dlq show; " +
        '--past-window moves it, trusting the effect keys alone)',
    );
  // Only a copy that would be sent back itself counts as a duplicate: one kept for any reason above
  // stays kept, whatever became of its twin.
  const twin = ctx.sentBack.get(id);
  if (twin !== undefined) {
    if (!twin.equals(msg.content))
      return keep(
        `same message id as a message ${ctx.options.dryRun ? 'that would be redriven' : 'redriven'} just ` +
          `before it by this command, but a different body: not a copy of that event, and ${ctx.queue}'s ` +
          'consumer deduplicates by message id; not moved (inspect it with dlq show)',
      );
    const copy = 'another copy of this event (same message id and body)';
    return ctx.options.dryRun
      ? {
          id,
          ok: true,
          outcome: 'would-remove-duplicate',
          reason: `${copy} comes before it and would be redriven: this one would be removed from ${ctx.dlq}, not sent twice`,
          details,
        }
      : {
          id,
          ok: true,
          outcome: 'duplicate',
          reason: `${copy} was redriven just before it: removed from ${ctx.dlq}, not sent twice (its consumer deduplicates by message id)`,
          details,
        };
  }
  if (ctx.options.dryRun) {
    ctx.sentBack.set(id, msg.content);
    return { id, ok: true, outcome: 'would-redrive', details };
  }
  try {
    await publishConfirmed(
      channel,
      target,
      msg,
      ctx.confirmTimeoutMs,
      trustedSender ? ctx.trust.operator : undefined,
    );
  } catch (err) {
    return keep(`not moved, still in ${ctx.dlq}: ${(err as Error).message}`);
  }
  ctx.sentBack.set(id, msg.content);
  return { id, ok: true, outcome: 'redriven', details };
}

/**
 * When a dead letter was first sent: its timestamp (every event the outbox publishes has one), else
 * when it was dead-lettered, which is later; undefined when it says neither.
 */
function sentAt(msg: GetMessage): Date | undefined {
  const published = msg.properties.timestamp as unknown;
  if (typeof published === 'number') return new Date(published * 1000);
  const deadLettered = msg.properties.headers?.[DEAD_LETTER_HEADERS.at] as unknown;
  const at = typeof deadLettered === 'string' ? new Date(deadLettered) : undefined;
  return at && !Number.isNaN(at.getTime()) ? at : undefined;
}

// ---------------------------------------------------------------------------------------------------
// shared

export interface DlqVisit extends DeadLetterQueue {
  channel: ConfirmChannel;
  /** How many messages to take from this DLQ (what is left of the limit, at most what it holds). */
  take: number;
}

/**
 * Visits each selected DLQ that exists, on its own confirm channel, taking at most the messages it
 * held when visited (so messages that come back meanwhile, dead-lettered again, are not taken twice).
 */
export async function eachDeadLetterQueue(
  deps: DlqDeps,
  options: DlqReadOptions,
  visit: (v: DlqVisit) => Promise<void>,
): Promise<void> {
  if (options.limit !== undefined && !(Number.isInteger(options.limit) && options.limit >= 1))
    throw new UsageError(`--limit must be a whole number of messages, at least 1 (got ${options.limit})`);
  const queues = resolveDeadLetterQueues(deps.config, options);
  const states = await Promise.all(queues.map((q) => queueState(deps.connection, q.dlq)));
  let left = options.limit ?? Infinity;
  const plan = queues.map((q, i) => {
    const take = Math.min(left, states[i]?.messages ?? 0);
    left -= take;
    return { ...q, take };
  });
  for (const [i, q] of queues.entries())
    if (!states[i]) deps.logger.info({ dlq: q.dlq }, 'DLQ not declared on this broker yet: nothing in it');
  (deps.progress ?? noProgress).start(plan.reduce((sum, q) => sum + q.take, 0));

  for (const q of plan.filter((p) => p.take > 0)) {
    const channel = await deps.connection.createConfirmChannel();
    channel.on('error', (err: Error) =>
      deps.logger.warn({ dlq: q.dlq, err: err.message }, 'AMQP channel error'),
    );
    try {
      await visit({ ...q, channel });
    } finally {
      await channel.close().catch(() => undefined);
    }
  }
}

/** Message and consumer counts, or undefined when the queue does not exist (checked on a throwaway channel: a 404 closes it). */
/** A queue's ready messages and consumers; undefined when it does not exist. */
export async function queueState(
  connection: ChannelModel,
  queue: string,
): Promise<{ messages: number; consumers: number } | undefined> {
  const channel: Channel = await connection.createChannel();
  channel.on('error', () => undefined);
  try {
    const { messageCount, consumerCount } = await channel.checkQueue(queue);
    return { messages: messageCount, consumers: consumerCount };
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  } finally {
    await channel.close().catch(() => undefined);
  }
}

/** Returns held messages to the DLQ in their order, uncounted as failures (see the module comment). */
export function giveBack(channel: Channel, held: GetMessage[]): void {
  for (const msg of held) {
    try {
      channel.nack(msg, false, true);
    } catch {
      // The channel is gone: the broker has returned its unacked messages already.
    }
  }
}

/** Headers a dead-lettering added (ours, the broker's, the quorum queue's counters): none go back. */
const DEAD_LETTER_ONLY_HEADERS = new Set<string>([
  ...Object.values(DEAD_LETTER_HEADERS),
  'x-death',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-first-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
  'x-last-death-exchange',
  'x-delivery-count',
  'x-acquired-count',
]);

/**
 * The message as first published: same body, message id, type, correlation id, content type and
 * encoding, timestamp, app id, priority, reply-to, persistence and headers, minus the dead-letter
 * headers. Not the expiration (it would expire again on the way back) nor the user id (the broker
 * checks it against our login).
 */
export function redriveProperties(p: MessageProperties): Options.Publish {
  const headers = Object.fromEntries(
    Object.entries(p.headers ?? {}).filter(([key]) => !DEAD_LETTER_ONLY_HEADERS.has(key)),
  );
  const out: Options.Publish = { headers, deliveryMode: p.deliveryMode ?? 2, mandatory: true };
  const copy = [
    'contentType',
    'contentEncoding',
    'correlationId',
    'replyTo',
    'messageId',
    'timestamp',
    'type',
    'appId',
    'priority',
  ] as const;
  for (const key of copy) if (p[key] !== undefined && p[key] !== null) Object.assign(out, { [key]: p[key] });
  return out;
}

/**
 * Publishes to `queue` through the default exchange and waits for the broker's confirm. `mandatory`
 * makes a message no queue took (the queue was deleted) come back as a return instead of being
 * confirmed and dropped; messages go one at a time, so a return belongs to this one.
 */
function publishConfirmed(
  channel: ConfirmChannel,
  queue: string,
  msg: GetMessage,
  timeoutMs: number,
  userId: string | undefined,
) {
  return new Promise<void>((resolve, reject) => {
    let returned = false;
    const onReturn = () => (returned = true);
    const done = (err?: Error) => {
      clearTimeout(timer);
      channel.off('return', onReturn);
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(
      () => done(new Error(`no publisher confirm within ${timeoutMs} ms (is RabbitMQ healthy? try again)`)),
      timeoutMs,
    );
    channel.on('return', onReturn);
    try {
      const properties = { ...redriveProperties(msg.properties), ...(userId ? { userId } : {}) };
      channel.publish('', queue, msg.content, properties, (err: unknown) => {
        if (err) done(new Error(`the broker refused it (nack): ${String(err)}`));
        else if (returned)
          done(
            new Error(
              `queue ${queue} does not exist on this broker: start its consumer once (it declares it), then redrive again`,
            ),
          );
        else done();
      });
    } catch (err) {
      done(err as Error);
    }
  });
}

/** What an operator needs to decide about a dead letter, from its dead-letter headers (ours, else the broker's `x-death`). */
export function describeDeadLetter(msg: GetMessage, dlq: string, queue: string) {
  const p = msg.properties;
  const headers = (p.headers ?? {}) as Record<string, unknown>;
  const death = latestDeath(headers);
  const text = (value: unknown) => (value === undefined || value === null ? undefined : String(value));
  return {
    dlq,
    messageId: text(p.messageId),
    type: text(p.type),
    routingKey:
      text(headers[DEAD_LETTER_HEADERS.routingKey]) ??
      text(death?.['routing-keys']?.[0]) ??
      msg.fields.routingKey,
    orderId: orderIdOf(msg.content),
    correlationId: text(p.correlationId),
    reason:
      text(headers[DEAD_LETTER_HEADERS.reason]) ?? (death ? `broker: ${String(death.reason)}` : undefined),
    attempts: numberOf(headers[DEAD_LETTER_HEADERS.attempts]) ?? numberOf(death?.count),
    deadLetteredAt: text(headers[DEAD_LETTER_HEADERS.at]) ?? dateOf(death?.time),
    publishedAt: typeof p.timestamp === 'number' ? new Date(p.timestamp * 1000).toISOString() : undefined,
    originalQueue:
      text(headers[DEAD_LETTER_HEADERS.queue]) ??
      text(headers['x-first-death-queue']) ??
      text(death?.queue) ??
      queue,
    /** Times this message was returned to the DLQ (e.g. shown) before; counted by quorum queues. */
    returnsToDlq: numberOf(headers['x-delivery-count']) ?? 0,
  };
}

interface XDeath {
  queue?: unknown;
  reason?: unknown;
  count?: unknown;
  time?: unknown;
  'routing-keys'?: unknown[];
}

/** The broker's record of the dead-lettering that brought the message here (x-death is newest first). */
function latestDeath(headers: Record<string, unknown>): XDeath | undefined {
  const deaths = headers['x-death'];
  return Array.isArray(deaths) ? (deaths[0] as XDeath | undefined) : undefined;
}

function numberOf(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : Number(value);
  return value === undefined || value === null || !Number.isFinite(n) ? undefined : n;
}

function dateOf(value: unknown): string | undefined {
  if (value instanceof Date) return value.toISOString();
  const seconds = numberOf((value as { value?: unknown } | undefined)?.value ?? value);
  return seconds === undefined ? undefined : new Date(seconds * 1000).toISOString();
}

/** The order id of an event envelope; undefined for a body that is not one (the reason it is here, often). */
function orderIdOf(content: Buffer): string | undefined {
  try {
    const body: unknown = JSON.parse(content.toString('utf8'));
    const orderId = (body as { orderId?: unknown } | null)?.orderId;
    return typeof orderId === 'string' ? orderId : undefined;
  } catch {
    return undefined;
  }
}

const BODY_PREVIEW_CHARS = 2000;

function bodyPreview(content: Buffer): string {
  const text = content.toString('utf8');
  return text.length > BODY_PREVIEW_CHARS ? `${text.slice(0, BODY_PREVIEW_CHARS)}…` : text;
}

/** The message id, or its position for a message published without one. */
function messageKey(msg: GetMessage, dlq: string, n: number): string {
  return typeof msg.properties.messageId === 'string' && msg.properties.messageId !== ''
    ? msg.properties.messageId
    : `${dlq}#${n + 1}`;
}
