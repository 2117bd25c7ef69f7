/**
 * The process's RabbitMQ connection: one reconnecting connection per process, channels that reopen
 * when the broker closes them, and a reader of queue depths.
 *
 * Reconnection is amqp-connection-manager's: it reconnects the connection and re-runs every channel's
 * setup (topology, prefetch, consume) on the new connection. Two gaps in it are closed here and in the
 * consumer:
 * - It does not reopen a channel the broker closed while the connection stays up (e.g. a 404 or 406
 *   channel error); `watchChannel` forces a reconnect in that case instead of leaving it dead.
 * - Its `ack`/`nack` go to whatever channel is current, so acking a message received before a
 *   reconnect would hit the new channel with a stale delivery tag (406, closing the channel). Consumers
 *   (consumer.ts) therefore consume inside the setup function and settle each message on the channel
 *   that delivered it; if that channel is gone, the broker redelivers the message (at least once).
 */
import amqp, { type AmqpConnectionManager, type ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ConfirmChannel } from 'amqplib';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';

export type { AmqpConnectionManager, ChannelWrapper };

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

/**
 * The broker user an AMQP URL logs in as (amqplib's default, `guest`, when it names none): the
 * `user_id` the broker lets this connection stamp on what it publishes.
 */
export function amqpUser(url: string): string {
  try {
    const user = decodeURIComponent(new URL(url).username);
    return user === '' ? 'guest' : user;
  } catch {
    return 'guest';
  }
}

/** The URL with its password replaced, for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<invalid AMQP_URL>';
  }
}

/** Broker-closed channels in a row, per connection manager: a cause that persists backs off. */
const channelCloses = new WeakMap<AmqpConnectionManager, number>();

/**
 * Forces a reconnect when the broker closes `channel` while its connection stays up, so the wrapper's
 * setup runs again on a fresh channel. A channel closed along with its connection is left to the
 * manager's ordinary reconnect, and so is one closed by us (`isClosing`).
 */
export function watchChannel(
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

/** Asks the manager to reconnect; a no-op once it was closed. */
export function safeReconnect(manager: AmqpConnectionManager): void {
  try {
    manager.reconnect();
  } catch {
    // closed meanwhile
  }
}
