/**
 * Load generation: a closed loop (N units in flight, each lane starting the next when its unit is
 * done) and an open loop (units started at a fixed arrival rate whatever happens to earlier ones,
 * latency counted from the scheduled start so a late driver cannot hide queueing).
 *
 * A "unit" is one order through the pipeline (POST /orders → its final event seen by a subscriber)
 * or one bare workflow (client start → result).
 */
import http from 'node:http';
import amqplib, { type ChannelModel } from 'amqplib';

export interface UnitResult {
  /** ms since the run's t0 when the unit was (scheduled to be) started. */
  sentAt: number;
  /** ms since t0 when it was seen done (or gave up). */
  doneAt: number;
  /** The final event type / workflow outcome, or an error such as `http-503`, `timeout`. */
  outcome: string;
  /** For orders: ms from sending the POST to its 202. */
  acceptMs?: number;
  /** For orders: the order id, and when the POST was really sent (ms since t0). */
  id?: string;
  postedAt?: number;
}

export type StartUnit = (i: number, scheduledAt: number) => Promise<UnitResult>;

export interface Progress {
  update(done: number, records: UnitResult[]): void;
  /** `done`: how many are done, when not every record is (a stopped run's aborted ones are not). */
  finish(records: UnitResult[], done?: number): void;
}

export interface LoopControl {
  aborted(): boolean;
}

export async function closedLoop(
  total: number,
  concurrency: number,
  start: StartUnit,
  now: () => number,
  progress?: Progress,
  control?: LoopControl,
): Promise<UnitResult[]> {
  const records: UnitResult[] = [];
  let next = 0;
  const lane = async () => {
    while (next < total && !control?.aborted()) {
      const i = next++;
      records.push(await start(i, now()));
      progress?.update(records.length, records);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, lane));
  progress?.finish(records);
  return records;
}

export async function openLoop(
  total: number,
  ratePerSecond: number,
  start: StartUnit,
  now: () => number,
  progress?: Progress,
  control?: LoopControl,
): Promise<UnitResult[]> {
  const records: UnitResult[] = [];
  const inFlight: Array<Promise<void>> = [];
  const t0 = now();
  for (let i = 0; i < total && !control?.aborted(); i++) {
    const scheduledAt = t0 + (i * 1000) / ratePerSecond;
    const wait = scheduledAt - now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    inFlight.push(
      start(i, scheduledAt).then((r) => {
        records.push(r);
        progress?.update(records.length, records);
      }),
    );
  }
  await Promise.all(inFlight);
  progress?.finish(records);
  return records;
}

// ------------------------------------------------------------------------------------------ HTTP

export interface HttpAnswer {
  status: number;
  body: string;
}

/** A keep-alive HTTP client for one host; connections are reused like a real client's pool. */
export class HttpClient {
  private readonly agent: http.Agent;

  constructor(
    private readonly port: number,
    maxSockets: number,
    /** The `Authorization` header every request carries. */
    private readonly authorization: string,
  ) {
    // An idle socket is closed here before the API's 5 s keep-alive timeout closes it there: a
    // request sent on a socket the server is closing at that moment fails (seen: 1 POST in 320).
    this.agent = new http.Agent({ keepAlive: true, maxSockets, timeout: 4_000 });
  }

  request(
    method: string,
    path: string,
    body?: string,
    headers: Record<string, string> = {},
  ): Promise<HttpAnswer> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: this.port,
          method,
          path,
          agent: this.agent,
          headers: body
            ? {
                ...headers,
                authorization: this.authorization,
                'content-type': 'application/json',
                'content-length': Buffer.byteLength(body),
              }
            : { ...headers, authorization: this.authorization },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
          );
          res.on('error', reject);
        },
      );
      req.setTimeout(30_000, () => req.destroy(new Error('HTTP request timed out')));
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

// ------------------------------------------------------------------------------- final events

/** The events that end an order. */
export const FINAL_EVENTS = ['order.completed', 'order.out_of_stock', 'payment.failed', 'order.cancelled'];

interface Final {
  type: string;
  at: number;
}

/**
 * A subscriber of the bench's exchange, as any other service would be: its own exclusive queue
 * bound to the final event types. Records when each order's final event arrives.
 */
export class FinalEvents {
  private connection: ChannelModel | undefined;
  private readonly seen = new Map<string, Final>();
  private readonly waiters = new Map<string, (final: Final) => void>();
  /** Every final event received, for the time series of phases without a waiting lane (backlog). */
  readonly arrivals: Final[] = [];
  received = 0;

  constructor(private readonly now: () => number) {}

  async connect(url: string, exchange: string): Promise<void> {
    this.connection = await amqplib.connect(url, {
      clientProperties: { connection_name: 'acme-bench-subscriber' },
    });
    const channel = await this.connection.createChannel();
    await channel.assertExchange(exchange, 'topic', { durable: true });
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    for (const key of FINAL_EVENTS) await channel.bindQueue(queue, exchange, key);
    await channel.consume(
      queue,
      (msg) => {
        if (!msg) return;
        const at = this.now();
        let orderId: string | undefined;
        try {
          orderId = (JSON.parse(msg.content.toString()) as { orderId?: string }).orderId;
        } catch {
          return;
        }
        if (!orderId || this.seen.has(orderId)) return; // at-least-once: a duplicate changes nothing
        const final = { type: msg.fields.routingKey, at };
        this.seen.set(orderId, final);
        this.arrivals.push(final);
        this.received += 1;
        const waiter = this.waiters.get(orderId);
        if (waiter) {
          this.waiters.delete(orderId);
          waiter(final);
        }
      },
      { noAck: true },
    );
  }

  /** The order's final event, waiting for it up to `timeoutMs`; undefined on timeout. */
  wait(orderId: string, timeoutMs: number): Promise<Final | undefined> {
    const seen = this.seen.get(orderId);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(orderId);
        resolve(undefined);
      }, timeoutMs);
      this.waiters.set(orderId, (final) => {
        clearTimeout(timer);
        resolve(final);
      });
    });
  }

  get(orderId: string): Final | undefined {
    return this.seen.get(orderId);
  }

  async close(): Promise<void> {
    await this.connection?.close().catch(() => {});
  }
}
