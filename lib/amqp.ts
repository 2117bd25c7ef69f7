/**
 * RabbitMQ: one reconnecting connection per process, the topology of `acme.events`, publishing with
 * the event envelope's properties, and consuming with bounded retries and a dead-letter queue.
 *
 * Topology (declared idempotently by whoever needs it, so any process may start first):
 *
 *   <exchange>             topic, durable; routing key = event type
 *   <exchange>.dlx         direct, durable; one binding per consumer queue (routing key = queue name)
 *   <queue>                quorum, durable, bound to its routing keys, dead-letters to <exchange>.dlx
 *   <queue>.dlq            quorum, durable, bound to <exchange>.dlx with key <queue>
 *
 * Reconnection is amqp-connection-manager's: it reconnects the connection and re-runs every channel's
 * setup (topology, prefetch, consume) on the new connection. Two gaps in it are closed here:
 * - It does not reopen a channel the broker closed while the connection stays up (e.g. a 404 or 406
 *   channel error); `watchChannel` forces a reconnect in that case instead of leaving it dead.
 * - Its `ack`/`nack` go to whatever channel is current, so acking a message received before a
 *   reconnect would hit the new channel with a stale delivery tag (406, closing the channel). Consumers
 *   therefore consume inside the setup function and settle each message on the channel that
 *   delivered it; if that channel is gone, the broker redelivers the message (at least once).
 */
import amqp, { type AmqpConnectionManager, type ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { z } from 'zod';
import type { Config } from './config.js';
import type { Logger } from './logger.js';
import { consumerMetrics, Registry } from './metrics.js';

export type { AmqpConnectionManager, ChannelWrapper };

/** The DLQ of a consumer queue. */
export const dlqName = (queue: string): string => `${queue}.dlq`;
/** The dead-letter exchange shared by every consumer queue of an events exchange. */
export const dlxName = (exchange: string): string => `${exchange}.dlx`;

/**
 * Broker-side backstop for a message that never gets settled by our code (e.g. it crashes the
 * consumer each time): the quorum queue dead-letters it after this many returns. Our own limit
 * (`maxDeliveries`, at most 100 by config) always applies first and records the reason. A constant,
 * because queue arguments cannot change once declared: a config change must not break re-declaring.
 */
export const DELIVERY_LIMIT_BACKSTOP = 100;

// ---------------------------------------------------------------------------------------------------
// Connection

export interface ConnectAmqpOptions {
  /** Shown as the connection name in the RabbitMQ management UI and `rabbitmqctl list_connections`. */
  name: string;
  logger: Logger;
  heartbeatSeconds?: number;
  reconnectSeconds?: number;
}

/**
 * A connection that reconnects on its own; create it once in `main()` and `close()` it on shutdown.
 * Does not wait for the broker: channels buffer until connected, and publishes time out.
 */
export function connectAmqp(
  config: Pick<Config, 'AMQP_URL'>,
  { name, logger, heartbeatSeconds = 5, reconnectSeconds = 1 }: ConnectAmqpOptions,
): AmqpConnectionManager {
  const manager = amqp.connect([config.AMQP_URL], {
    heartbeatIntervalInSeconds: heartbeatSeconds,
    reconnectTimeInSeconds: reconnectSeconds,
    connectionOptions: { clientProperties: { connection_name: name } },
  });
  const where = redactUrl(config.AMQP_URL);
  manager.on('connect', () => logger.info({ amqp: where }, 'connected to RabbitMQ'));
  manager.on('disconnect', ({ err }) =>
    logger.warn({ amqp: where, err: err?.message }, 'disconnected from RabbitMQ; reconnecting'),
  );
  manager.on('connectFailed', ({ err }) =>
    logger.warn(
      { amqp: where, err: err.message },
      'cannot connect to RabbitMQ; retrying (is it running? check AMQP_URL)',
    ),
  );
  manager.on('blocked', ({ reason }) => logger.warn({ reason }, 'RabbitMQ blocked this connection'));
  manager.on('unblocked', () => logger.info('RabbitMQ unblocked this connection'));
  return manager;
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<invalid AMQP_URL>';
  }
}

/**
 * Forces a reconnect when the broker closes `channel` while its connection stays up, so the wrapper's
 * setup runs again on a fresh channel. A channel closed along with its connection is left to the
 * manager's ordinary reconnect, and so is one closed by us (`isClosing`).
 */
/** Broker-closed channels in a row, per connection manager: a cause that persists backs off. */
const channelCloses = new WeakMap<AmqpConnectionManager, number>();

function watchChannel(
  manager: AmqpConnectionManager,
  channel: ConfirmChannel,
  logger: Logger,
  isClosing: () => boolean,
): void {
  const model = manager.connection;
  const opened = Date.now();
  channel.on('error', (err: Error) => {
    const hint = /PRECONDITION_FAILED/.test(err.message)
      ? ' (a queue or exchange exists with other arguments: delete it, or rename ours, to go on)'
      : '';
    logger.warn({ err: err.message }, `AMQP channel error${hint}`);
  });
  channel.once('close', () => {
    // A channel that lived a while closed for a passing reason; one closed at once (its setup is
    // refused every time, say) would otherwise reopen once a second forever.
    const closes = Date.now() - opened > 10_000 ? 1 : (channelCloses.get(manager) ?? 0) + 1;
    channelCloses.set(manager, closes);
    const delayMs = Math.min(1000 * 2 ** (closes - 1), 60_000);
    setTimeout(() => {
      if (isClosing() || manager.connection !== model || !manager.isConnected()) return;
      logger.warn({ retryInMs: delayMs }, 'AMQP channel closed by the broker; reconnecting to reopen it');
      try {
        manager.reconnect();
      } catch {
        // the manager was closed meanwhile: nothing to reopen
      }
    }, delayMs).unref();
  });
}

// ---------------------------------------------------------------------------------------------------
// Inspecting queues

export interface QueueInspector {
  /** Messages ready in `queue`; rejects while not connected, or when the queue does not exist. */
  messageCount(queue: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * Reads queue depths (for the DLQ gauge) on one plain channel of the process's own connection, opened
 * on first use and kept: no connection per read, and a channel apart from the consumer's, so a passive
 * declare the broker refuses (a 404 for a queue someone deleted) closes only this one, which the next
 * read opens again.
 */
export function createQueueInspector(manager: AmqpConnectionManager): QueueInspector {
  let open: { connection: unknown; channel: Promise<Channel> } | undefined;
  let closed = false;
  const channel = (): Promise<Channel> => {
    if (closed) return Promise.reject(new Error('queue inspector closed'));
    const connection = manager.connection;
    if (!connection || !manager.isConnected()) return Promise.reject(new Error('not connected to RabbitMQ'));
    if (open?.connection !== connection) {
      const current: NonNullable<typeof open> = {
        connection,
        channel: connection.createChannel().then((ch) => {
          ch.on('error', () => {}); // a refused declare: reported by its own promise
          ch.on('close', () => {
            if (open === current) open = undefined;
          });
          return ch;
        }),
      };
      current.channel.catch(() => {
        if (open === current) open = undefined;
      });
      open = current;
    }
    return open.channel;
  };
  return {
    async messageCount(queue) {
      return (await (await channel()).checkQueue(queue)).messageCount;
    },
    async close() {
      closed = true;
      const current = open;
      open = undefined;
      await current?.channel.then((ch) => ch.close()).catch(() => {});
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Topology

export async function assertEventExchange(channel: ConfirmChannel, exchange: string): Promise<void> {
  await channel.assertExchange(exchange, 'topic', { durable: true });
}

export interface ConsumerQueueSpec {
  exchange: string;
  queue: string;
  routingKeys: readonly string[];
}

/** Declares the exchange, the queue with its dead-letter path, and the bindings. Idempotent. */
export async function assertConsumerQueue(
  channel: ConfirmChannel,
  { exchange, queue, routingKeys }: ConsumerQueueSpec,
): Promise<void> {
  const dlx = dlxName(exchange);
  await assertEventExchange(channel, exchange);
  await channel.assertExchange(dlx, 'direct', { durable: true });
  await channel.assertQueue(dlqName(queue), { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await channel.bindQueue(dlqName(queue), dlx, queue);
  await channel.assertQueue(queue, {
    durable: true,
    arguments: {
      'x-queue-type': 'quorum',
      'x-dead-letter-exchange': dlx,
      'x-dead-letter-routing-key': queue,
      'x-delivery-limit': DELIVERY_LIMIT_BACKSTOP,
    },
  });
  for (const key of routingKeys) await channel.bindQueue(queue, exchange, key);
}

// ---------------------------------------------------------------------------------------------------
// Publishing

/** What an outbox row (or any producer) knows about the event it publishes. */
export interface OutgoingEvent {
  id: string;
  type: string;
  correlationId?: string | undefined;
  occurredAt?: Date | undefined;
  headers?: Record<string, unknown> | undefined;
}

/** The AMQP properties every event carries (ARCHITECTURE.md, "Events"). */
export function eventPublishOptions(event: OutgoingEvent, appId?: string): Options.Publish {
  return {
    messageId: event.id,
    type: event.type,
    ...(event.correlationId ? { correlationId: event.correlationId } : {}),
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    persistent: true,
    // AMQP timestamps are whole seconds since the epoch.
    timestamp: Math.floor((event.occurredAt ?? new Date()).getTime() / 1000),
    headers: event.headers ?? {},
    ...(appId ? { appId } : {}),
  };
}

export class PublishTimeoutError extends Error {
  override name = 'PublishTimeoutError';
}

export interface EventPublisher {
  /** Resolves once the broker confirmed the message; rejects on a nack or after the timeout. */
  publish(event: OutgoingEvent, body: Buffer): Promise<void>;
  close(): Promise<void>;
}

/**
 * A confirm channel that publishes events to the topic exchange with routing key = type. While the
 * connection is down messages wait in the wrapper, but never longer than `timeoutMs`: a lost
 * connection makes `publish` fail, never hang. A message that timed out may still reach the broker
 * later (at least once), which consumers tolerate by deduplicating on the event id.
 */
export function createEventPublisher(
  manager: AmqpConnectionManager,
  opts: {
    exchange: string;
    timeoutMs: number;
    logger: Logger;
    appId?: string;
    /**
     * Queues that must exist before anything is published: a topic exchange confirms a message no
     * queue is bound to and drops it. The core declares its own consumer's queue here, so an
     * `order.placed` published before the bridge ever connected still reaches it.
     */
    queues?: readonly ConsumerQueueSpec[];
  },
): EventPublisher {
  let closing = false;
  const wrapper = manager.createChannel({
    name: `publish:${opts.exchange}`,
    confirm: true,
    publishTimeout: opts.timeoutMs,
    setup: async (channel: ConfirmChannel) => {
      watchChannel(manager, channel, opts.logger, () => closing);
      await assertEventExchange(channel, opts.exchange);
      for (const queue of opts.queues ?? []) await assertConsumerQueue(channel, queue);
    },
  });
  wrapper.on('error', (err: Error) =>
    opts.logger.warn({ err: err.message }, 'AMQP publisher channel setup failed'),
  );

  return {
    async publish(event, body) {
      try {
        await wrapper.publish(opts.exchange, event.type, body, eventPublishOptions(event, opts.appId));
      } catch (err) {
        if (err instanceof Error && err.message === 'timeout')
          throw new PublishTimeoutError(
            `no publisher confirm for event ${event.id} within ${opts.timeoutMs} ms (is RabbitMQ reachable?)`,
          );
        throw err;
      }
    },
    async close() {
      closing = true;
      await wrapper.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Consuming

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

export interface DeliveryContext {
  /** 1 for the first delivery; from the quorum queue's `x-delivery-count`. */
  attempt: number;
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
  /** How long to wait for the broker to confirm a dead-lettered copy. */
  deadLetterTimeoutMs?: number;
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
} as const;

/**
 * Consumes `queue` with explicit failure handling:
 * - handler resolves: ack;
 * - handler throws `PoisonMessageError`: a copy goes to `<queue>.dlq` with the reason, then ack;
 * - handler throws anything else: hold the message `retryDelayMs(attempt)` (no hot loop), then
 *   nack-requeue; the quorum queue counts the delivery, and delivery number `maxDeliveries` that
 *   fails is dead-lettered like a poison message.
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
    try {
      await confirmPublish(
        channel,
        dlxName(opts.exchange),
        queue,
        msg.content,
        { ...copyProperties(msg), headers },
        deadLetterTimeoutMs,
      );
      settle('ack dead-lettered', () => channel.ack(msg));
    } catch (err) {
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

  const handleDelivery = async (channel: ConfirmChannel, msg: ConsumeMessage) => {
    const attempt = deliveryCount(msg) + 1;
    if (attempt > 1 || msg.fields.redelivered) metrics.redelivered(queue);
    const log = logger.child({
      messageId: msg.properties.messageId,
      routingKey: msg.fields.routingKey,
      attempt,
    });
    try {
      await opts.handle(msg, { attempt });
      settle('ack', () => channel.ack(msg));
    } catch (err) {
      const reason = describeError(err);
      if (err instanceof PoisonMessageError) {
        log.error({ reason }, `malformed message: moving it to ${dlqName(queue)} without retrying`);
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

function safeReconnect(manager: AmqpConnectionManager): void {
  try {
    manager.reconnect();
  } catch {
    // closed meanwhile
  }
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

/** The original message's properties for its dead-letter copy (no expiry; userId must match us). */
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

function confirmPublish(
  channel: ConfirmChannel,
  exchange: string,
  routingKey: string,
  content: Buffer,
  options: Options.Publish,
  timeoutMs: number,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new PublishTimeoutError(`no publisher confirm within ${timeoutMs} ms`)),
      timeoutMs,
    );
    try {
      channel.publish(exchange, routingKey, content, options, (err: unknown) => {
        clearTimeout(timer);
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve();
      });
    } catch (err) {
      clearTimeout(timer);
      reject(err as Error);
    }
  });
}
