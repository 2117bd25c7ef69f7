/**
 * Publishing events: a confirm channel per publisher, the envelope's AMQP properties, and a bound on
 * how long a publish may wait for its confirm.
 */
import type { ConfirmChannel, Options } from 'amqplib';
import type { Logger } from '../logger.js';
import { watchChannel, type AmqpConnectionManager } from './connection.js';
import { assertConsumerQueue, assertEventExchange, type ConsumerQueueSpec } from './topology.js';

/** What an outbox row (or any producer) knows about the event it publishes. */
export interface OutgoingEvent {
  id: string;
  type: string;
  correlationId?: string | undefined;
  occurredAt?: Date | undefined;
  headers?: Record<string, unknown> | undefined;
}

/**
 * The AMQP properties every event carries (README "Events"). `userId` is the publisher's
 * own broker login: the broker refuses the publish unless it is, so consumers can trust it.
 */
export function eventPublishOptions(event: OutgoingEvent, appId?: string, userId?: string): Options.Publish {
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
    ...(userId ? { userId } : {}),
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
    /** Stamped as `user_id` on every message: the login of `manager`'s connection (amqpUser). */
    userId?: string;
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
        await wrapper.publish(
          opts.exchange,
          event.type,
          body,
          eventPublishOptions(event, opts.appId, opts.userId),
        );
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

/** A `mandatory` publish that no queue took: the broker returned it (and then confirmed it). */
export class UnroutableError extends Error {
  override name = 'UnroutableError';
}

/** Per channel, the tags of the mandatory publishes the broker returned (see `confirmPublish`). */
const returnedTags = new WeakMap<ConfirmChannel, Set<string>>();

function returnsOf(channel: ConfirmChannel, header: string): Set<string> {
  let tags = returnedTags.get(channel);
  if (!tags) {
    const seen = new Set<string>();
    channel.on('return', (msg: { properties: { headers?: Record<string, unknown> } }) => {
      const tag = msg.properties.headers?.[header];
      if (typeof tag === 'string') seen.add(tag);
    });
    returnedTags.set(channel, (tags = seen));
  }
  return tags;
}

/**
 * Publishes on `channel` and resolves on the broker's confirm; rejects on a nack or after `timeoutMs`.
 *
 * With `mustRoute` the publish is `mandatory`: a message no queue takes is returned instead of being
 * confirmed into the void, and this rejects with UnroutableError. RabbitMQ sends the return before
 * the confirm, so the confirm callback knows. Many publishes share a busy channel, so each carries a
 * tag of its own in the header `mustRoute.header` to tell its return from the others'.
 */
export function confirmPublish(
  channel: ConfirmChannel,
  exchange: string,
  routingKey: string,
  content: Buffer,
  options: Options.Publish,
  timeoutMs: number,
  mustRoute?: { header: string; tag: string },
): Promise<void> {
  const returned = mustRoute ? returnsOf(channel, mustRoute.header) : undefined;
  const properties: Options.Publish = mustRoute
    ? { ...options, mandatory: true, headers: { ...options.headers, [mustRoute.header]: mustRoute.tag } }
    : options;
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      if (mustRoute) returned?.delete(mustRoute.tag);
      reject(new PublishTimeoutError(`no publisher confirm within ${timeoutMs} ms`));
    }, timeoutMs);
    try {
      channel.publish(exchange, routingKey, content, properties, (err: unknown) => {
        clearTimeout(timer);
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else if (mustRoute && returned?.delete(mustRoute.tag))
          reject(new UnroutableError(`no queue is bound to ${exchange} for ${routingKey}`));
        else resolve();
      });
    } catch (err) {
      clearTimeout(timer);
      reject(err as Error);
    }
  });
}
