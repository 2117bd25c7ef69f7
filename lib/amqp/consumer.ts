/**
 * Consuming a queue with bounded retries and a dead-letter queue (topology.ts), settling each message
 * on the channel that delivered it (connection.ts says why).
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { z } from 'zod';
import type { Logger } from '../logger.js';
import { consumerMetrics, Registry } from '../metrics.js';
import { SpanKind, withSpan } from '../tracing.js';
import {
  createQueueInspector,
  safeReconnect,
  watchChannel,
  type AmqpConnectionManager,
  type ChannelWrapper,
} from './connection.js';
import { confirmPublish, UnroutableError } from './publisher.js';
import { assertConsumerQueue, dlqName, dlxName, type ConsumerQueueSpec } from './topology.js';

/** Thrown by a handler for a message that can never succeed (malformed): dead-lettered at once. */
export class PoisonMessageError extends Error {
  override name = 'PoisonMessageError';
}

/**
 * Parses a JSON message body against `schema`. A body that is not JSON or does not fit is poison:
 * `PoisonMessageError` naming each bad field, so the consumer dead-letters it at once with that reason.
 */
export function parseMessage<S extends z.ZodType>(schema: S, content: Buffer, what: string): z.infer<S> {
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch (err) {
    throw new PoisonMessageError(`body is not JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`);
    throw new PoisonMessageError(`invalid ${what}: ${problems.join('; ')}`);
  }
  return parsed.data;
}

/**
 * An event is routed by its type (routing key = type, AMQP `type` = type): a body whose `type`
 * disagrees with how it was routed or labelled was not published by our outbox, and is poison. A
 * re-drive arrives through the default exchange (routing key = the queue's name) with its `type`
 * property kept, so only that is checked then.
 */
export function assertRoutedAs(msg: Pick<ConsumeMessage, 'fields' | 'properties'>, type: string): void {
  const routed = msg.fields.exchange === '' ? undefined : msg.fields.routingKey;
  if (routed !== undefined && routed !== type)
    throw new PoisonMessageError(
      `routing key ${JSON.stringify(routed)} does not match the event type ${JSON.stringify(type)}`,
    );
  const labelled: unknown = msg.properties.type;
  if (labelled !== undefined && labelled !== null && labelled !== type)
    throw new PoisonMessageError(
      `AMQP type ${JSON.stringify(labelled)} does not match the event type ${JSON.stringify(type)}`,
    );
}

export interface DeliveryContext {
  /** 1 for the first delivery; from the quorum queue's `x-delivery-count`. */
  attempt: number;
  /**
   * Aborted when the consumer stops: a handler that waits (the bridge's admission window) gives up
   * and throws, and its message goes back to the queue, not to the DLQ.
   */
  stopping: AbortSignal;
}

export type MessageHandler = (message: ConsumeMessage, context: DeliveryContext) => Promise<void>;

export interface ConsumerOptions extends ConsumerQueueSpec {
  manager: AmqpConnectionManager;
  prefetch: number;
  /** Deliveries before a failing message goes to `<queue>.dlq` (config.BRIDGE_MAX_DELIVERIES). */
  maxDeliveries: number;
  logger: Logger;
  handle: MessageHandler;
  /** How long to hold a failed message before requeueing it; defaults to 1 s doubling up to 30 s. */
  retryDelayMs?: (attempt: number) => number;
  /**
   * Failures that say nothing about the message, only that a dependency is down (Temporal or the
   * database unreachable): retried with the same growing delays but not counted toward
   * `maxDeliveries`, so an outage does not empty the queue into the DLQ. The queue's broker-side
   * delivery limit (DELIVERY_LIMIT_BACKSTOP) still ends a message that fails for hours.
   */
  isTransient?: (err: unknown) => boolean;
  /**
   * Failures no retry can fix, besides `PoisonMessageError`: a value the database refuses to store
   * (a NUL byte in a trusted sender's text). Dead-lettered at once, as a malformed message is, instead
   * of holding a prefetch slot through every backed-off retry.
   */
  isPoison?: (err: unknown) => boolean;
  /** How long to wait for the broker to confirm a dead-lettered copy. */
  deadLetterTimeoutMs?: number;
  /** Larger bodies are dead-lettered at once, unread (config.AMQP_MAX_MESSAGE_BYTES). */
  maxMessageBytes?: number;
  /**
   * The broker login this consumer connects as (`amqpUser(AMQP_URL)`), stamped as `user_id` on its
   * dead-letter copies: the broker validates it, so a re-drive can tell a copy this consumer made
   * (and the sender it recorded) from one another service published to the dead-letter exchange.
   */
  user: string;
  /**
   * When set, only messages whose broker-validated `user_id` is one of these are handed to `handle`;
   * any other (none, or another user's) is dead-lettered at once: it was not sent by a producer of
   * these events (config.AMQP_TRUSTED_PUBLISHERS).
   */
  trustedPublishers?: readonly string[];
  /**
   * Where the consumer's metrics go: redeliveries of `queue`, and the depth of `<queue>.dlq` read at
   * scrape time. Default: a registry nobody scrapes.
   */
  registry?: Registry;
}

export interface QueueConsumer {
  /** Resolves once consuming (or when stopped before RabbitMQ was ever reached). */
  start(): Promise<void>;
  /** Stops taking messages, lets in-flight ones finish (retry waits are cut short), closes the channel. */
  stop(): Promise<void>;
}

export const defaultRetryDelayMs = (attempt: number): number => Math.min(1000 * 2 ** (attempt - 1), 30_000);

/** Headers of a dead-lettered copy: where it came from and why it failed. */
export const DEAD_LETTER_HEADERS = {
  reason: 'x-death-reason',
  attempts: 'x-delivery-attempts',
  exchange: 'x-original-exchange',
  routingKey: 'x-original-routing-key',
  queue: 'x-original-queue',
  at: 'x-dead-lettered-at',
  userId: 'x-original-user-id',
  /** This copy's own id: tells its return from others' if the DLQ is gone (confirmPublish's mustRoute). */
  copyId: 'x-dead-letter-copy-id',
} as const;

/**
 * Consumes `queue` with explicit failure handling:
 * - handler resolves: ack;
 * - handler throws `PoisonMessageError`: a copy goes to `<queue>.dlq` with the reason, then ack;
 * - handler throws anything else: hold the message `retryDelayMs(attempt)` (no hot loop), then
 *   nack-requeue; the quorum queue counts the delivery, and delivery number `maxDeliveries` that
 *   fails is dead-lettered like a poison message;
 * - the consumer stopping: `context.stopping` is aborted, and a handler that throws now (one that
 *   gave up waiting, say) has its message requeued at once, for the next consumer, never
 *   dead-lettered for it.
 * If the dead-letter copy cannot be confirmed, the message is kept (requeued after a delay) and
 * dead-lettered on a later delivery: never dropped. Settling on a channel that has since closed is
 * skipped: the broker redelivers.
 */
export function createConsumer(opts: ConsumerOptions): QueueConsumer {
  const { manager, queue, logger } = opts;
  const retryDelayMs = opts.retryDelayMs ?? defaultRetryDelayMs;
  const deadLetterTimeoutMs = opts.deadLetterTimeoutMs ?? 10_000;
  const metrics = consumerMetrics(opts.registry ?? new Registry(), { logger });
  const inspector = createQueueInspector(manager);
  metrics.watch(queue, dlqName(queue), () => inspector.messageCount(dlqName(queue)));
  const inFlight = new Set<Promise<void>>();
  const waits = new Set<() => void>();
  let stopping = false;
  const stop = new AbortController();
  // Every message held in a handler (up to the prefetch) may listen for the stop at once.
  setMaxListeners(0, stop.signal);
  let current: { channel: ConfirmChannel; consumerTag: string } | undefined;
  let wrapper: ChannelWrapper | undefined;
  let stopped!: () => void;
  const stoppedSignal = new Promise<void>((resolve) => (stopped = resolve));

  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      if (stopping) return resolve();
      const done = () => {
        clearTimeout(timer);
        waits.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waits.add(done);
    });

  const settle = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      logger.warn(
        { err: (err as Error).message, what },
        'cannot settle message: its channel closed; RabbitMQ will redeliver it',
      );
    }
  };

  const deadLetter = async (
    channel: ConfirmChannel,
    msg: ConsumeMessage,
    reason: string,
    attempt: number,
  ) => {
    const headers: Record<string, unknown> = { ...(msg.properties.headers ?? {}) };
    delete headers['x-delivery-count'];
    Object.assign(headers, {
      [DEAD_LETTER_HEADERS.reason]: reason.slice(0, 2000),
      [DEAD_LETTER_HEADERS.attempts]: attempt,
      [DEAD_LETTER_HEADERS.exchange]: msg.fields.exchange,
      [DEAD_LETTER_HEADERS.routingKey]: msg.fields.routingKey,
      [DEAD_LETTER_HEADERS.queue]: queue,
      [DEAD_LETTER_HEADERS.at]: new Date().toISOString(),
    });
    // Who sent it, as the broker validated it, never what the sender wrote in a header: the re-drive
    // keeps the trust of a trusted producer's message and of nothing else. The copy itself carries
    // our own login, so the re-drive believes this header only on copies made by this queue's reader.
    delete headers[DEAD_LETTER_HEADERS.userId];
    if (msg.properties.userId) headers[DEAD_LETTER_HEADERS.userId] = msg.properties.userId;
    try {
      // Mandatory: with the DLQ deleted (or its binding), the copy would be confirmed and dropped, and
      // the ack below would lose the message.
      await confirmPublish(
        channel,
        dlxName(opts.exchange),
        queue,
        msg.content,
        { ...copyProperties(msg), headers, userId: opts.user },
        deadLetterTimeoutMs,
        { header: DEAD_LETTER_HEADERS.copyId, tag: randomUUID() },
      );
      settle('ack dead-lettered', () => channel.ack(msg));
    } catch (err) {
      if (err instanceof UnroutableError) {
        // Declared again (as at start-up), so the next delivery of this message has a DLQ to go to.
        await assertConsumerQueue(channel, opts).then(
          () =>
            logger.error({ queue, dlq: dlqName(queue) }, 'the dead-letter queue was gone: declared it again'),
          (declareErr: unknown) =>
            logger.error(
              { err: (declareErr as Error).message },
              'the dead-letter queue is gone and cannot be declared',
            ),
        );
      }
      // Not rejected to the broker's own dead-lettering: for quorum queues that is at-most-once
      // by default. Kept instead, and tried again later: never lost.
      logger.error(
        { reason, err: (err as Error).message },
        'could not publish the dead-letter copy; keeping the message and trying again later',
      );
      await wait(retryDelayMs(attempt));
      settle('requeue', () => channel.nack(msg, false, true));
    }
  };

  /** Why the message is not even read: too large, or not from a trusted producer. */
  const refuse = (msg: ConsumeMessage): string | undefined => {
    if (opts.maxMessageBytes !== undefined && msg.content.length > opts.maxMessageBytes)
      return `message too large: ${msg.content.length} bytes, more than the ${opts.maxMessageBytes} allowed (AMQP_MAX_MESSAGE_BYTES)`;
    const trusted = opts.trustedPublishers;
    if (trusted && !trusted.includes(msg.properties.userId ?? '')) {
      const who = msg.properties.userId ? `user_id ${JSON.stringify(msg.properties.userId)}` : 'no user_id';
      return `untrusted publisher: ${who}; only ${trusted.join(', ')} may send these events (AMQP_TRUSTED_PUBLISHERS)`;
    }
    return undefined;
  };

  const handleDelivery = async (channel: ConfirmChannel, msg: ConsumeMessage) => {
    const attempt = deliveryCount(msg) + 1;
    if (attempt > 1 || msg.fields.redelivered) metrics.redelivered(queue);
    const log = logger.child({
      messageId: msg.properties.messageId,
      routingKey: msg.fields.routingKey,
      attempt,
    });
    const refusal = refuse(msg);
    if (refusal) {
      log.error(
        { reason: refusal, userId: msg.properties.userId },
        `refused: moving it to ${dlqName(queue)} unread`,
      );
      await deadLetter(channel, msg, refusal, attempt);
      return;
    }
    try {
      // The span continues the publisher's trace (its context is in the headers).
      const processing = {
        kind: SpanKind.CONSUMER,
        carrier: msg.properties.headers,
        attributes: {
          'messaging.system': 'rabbitmq',
          'messaging.operation': 'process',
          'messaging.destination.name': queue,
          'messaging.rabbitmq.destination.routing_key': msg.fields.routingKey,
          'messaging.message.id': String(msg.properties.messageId ?? ''),
          'messaging.rabbitmq.delivery_attempt': attempt,
        },
      };
      await withSpan(`${queue} process`, processing, () =>
        opts.handle(msg, { attempt, stopping: stop.signal }),
      );
      settle('ack', () => channel.ack(msg));
    } catch (err) {
      const reason = describeError(err);
      const poison = err instanceof PoisonMessageError || opts.isPoison?.(err) === true;
      if (stopping && !poison) {
        // Cut short by the stop (or failing during it): back to the queue for the next consumer.
        log.info({ reason }, 'stopping: message returned to the queue');
        settle('requeue', () => channel.nack(msg, false, true));
      } else if (poison) {
        log.error(
          { reason },
          `message can never be applied: moving it to ${dlqName(queue)} without retrying`,
        );
        await deadLetter(channel, msg, reason, attempt);
      } else if (attempt >= opts.maxDeliveries && !opts.isTransient?.(err)) {
        log.error({ reason }, `message failed ${attempt} times: moving it to ${dlqName(queue)}`);
        await deadLetter(channel, msg, reason, attempt);
      } else {
        const delay = retryDelayMs(attempt);
        log.warn({ reason, retryInMs: delay }, 'message failed; it will be retried');
        await wait(delay);
        settle('requeue', () => channel.nack(msg, false, true));
      }
    }
  };

  const onMessage = (channel: ConfirmChannel, msg: ConsumeMessage | null) => {
    if (!msg) {
      // The broker cancelled us (queue deleted?): reconnecting re-runs setup, which redeclares it.
      if (!stopping) {
        logger.warn({ queue }, 'consumer cancelled by RabbitMQ; reconnecting to resume');
        setTimeout(() => !stopping && safeReconnect(manager), 1000).unref();
      }
      return;
    }
    const task = handleDelivery(channel, msg).catch((err: unknown) =>
      logger.error({ err: describeError(err) }, 'unexpected error handling a message'),
    );
    inFlight.add(task);
    void task.finally(() => inFlight.delete(task));
  };

  return {
    async start() {
      if (wrapper) throw new Error('consumer already started');
      wrapper = manager.createChannel({
        name: `consume:${queue}`,
        confirm: true,
        setup: async (channel: ConfirmChannel) => {
          watchChannel(manager, channel, logger, () => stopping);
          await assertConsumerQueue(channel, opts);
          await channel.prefetch(opts.prefetch);
          if (stopping) return;
          const { consumerTag } = await channel.consume(queue, (msg) => onMessage(channel, msg));
          current = { channel, consumerTag };
          logger.info({ queue, prefetch: opts.prefetch }, 'consuming');
        },
      });
      wrapper.on('error', (err: Error) =>
        logger.error({ err: err.message, queue }, 'AMQP consumer setup failed; will retry on reconnect'),
      );
      await Promise.race([wrapper.waitForConnect(), stoppedSignal]);
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      stop.abort();
      stopped();
      for (const done of [...waits]) done();
      if (current) {
        await current.channel.cancel(current.consumerTag).catch(() => {});
      }
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
      await inspector.close();
      await wrapper?.close().catch(() => {});
    },
  };
}

/** Deliveries before this one; quorum queues count returns in `x-delivery-count`. */
export function deliveryCount(msg: Pick<ConsumeMessage, 'properties'>): number {
  const raw: unknown = msg.properties.headers?.['x-delivery-count'];
  const n = typeof raw === 'number' ? raw : Number(raw ?? 0);
  return Number.isFinite(n) && n >= 0 ? n : 0;
}

export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${err.name}: ${err.message}${cause}`;
}

/** The original message's properties for its dead-letter copy (no expiry; userId is ours, set by the caller). */
function copyProperties(msg: ConsumeMessage): Options.Publish {
  const p = msg.properties;
  const out: Options.Publish = { persistent: true };
  if (p.contentType) out.contentType = p.contentType;
  if (p.contentEncoding) out.contentEncoding = p.contentEncoding;
  if (p.correlationId) out.correlationId = p.correlationId;
  if (p.messageId) out.messageId = p.messageId;
  if (p.type) out.type = p.type;
  if (p.timestamp) out.timestamp = p.timestamp;
  if (p.appId) out.appId = p.appId;
  return out;
}
