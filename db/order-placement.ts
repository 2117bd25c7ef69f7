/**
 * Placing an order: the order, its lines, its Idempotency-Key and its `order.placed` event written
 * by one statement, with prices read from the catalogue. Returns outcomes as a tagged union for the
 * route to turn into status codes.
 *
 * Two round trips to PostgreSQL: one read (the prices and the caller's live key), one write. A
 * transaction around separate statements took eight (README "Performance"); a single statement
 * commits all of its parts or none, which is all the transaction was for.
 */
import { randomUUID } from 'node:crypto';
import { buildEvent, type OrderLine } from '../lib/events.js';
import { outboxHeaders, stampedWithDatabaseTime } from './outbox.js';
import type { Pool, Queryable } from './pool.js';

export interface PlaceOrderInput {
  customerId: string;
  email: string;
  /** At least one line (the API's schema requires it). */
  items: Array<{ sku: string; qty: number }>;
  idempotencyKey: string | undefined;
  requestHash: string;
  correlationId: string;
  /** How long a key is honoured (IDEMPOTENCY_KEY_RETENTION_HOURS); an older one is free again. */
  keyRetentionHours: number;
  /**
   * The largest total taken (EVENT_MAX_AMOUNT): the subscribers dead-letter an event with an amount
   * above it as implausible, so an order over it could never be followed, only raise alerts.
   */
  maxTotal: number;
}

export type PlaceOrderOutcome =
  | { kind: 'created'; orderId: string }
  /** Same Idempotency-Key, same request: the order made the first time. */
  | { kind: 'replayed'; orderId: string }
  /** Same Idempotency-Key, different request. */
  | { kind: 'idempotency_conflict'; orderId: string }
  /** Indexes into `items` whose SKU is not in the catalogue. */
  | { kind: 'unknown_skus'; indexes: number[] }
  | { kind: 'mixed_currencies'; currencies: string[] }
  | { kind: 'total_too_large'; total: string; max: number };

/**
 * Writes the order, its lines and its `order.placed` event, with prices read from `products` and
 * the total summed by PostgreSQL in NUMERIC.
 *
 * Idempotency: keys are the customer's own (`idempotency_keys (customer_id, key)`), honoured for
 * `keyRetentionHours`. A reused key is found by the first read (the cheap, common case). Two
 * requests racing with one key both get past that; the key's primary key lets exactly one write
 * claim it, the other writes nothing at all (its order is made only if its claim succeeded) and
 * answers with the winner's order. A pool, not a transaction's client: each statement must see what
 * was committed when it starts (the write waits on a racing claim, then sees it).
 */
export async function placeOrder(db: Pool, input: PlaceOrderInput): Promise<PlaceOrderOutcome> {
  if (input.items.length === 0) throw new Error('placeOrder: an order needs at least one line');
  const lines = await priceLines(db, input);
  const replay = replayOf(lines[0]!, input);
  if (replay) return replay;

  const unknown = lines.filter((line) => line.unit_price === null).map((line) => line.ord - 1);
  if (unknown.length > 0) return { kind: 'unknown_skus', indexes: unknown };
  const currencies = [...new Set(lines.map((line) => line.currency!))];
  if (currencies.length !== 1) return { kind: 'mixed_currencies', currencies };
  const total = lines[0]!.total;
  if (Number(total) > input.maxTotal) return { kind: 'total_too_large', total, max: input.maxTotal };

  const orderId = randomUUID();
  if (await insertOrder(db, input, { orderId, lines, total, currency: currencies[0]! })) {
    return { kind: 'created', orderId };
  }
  // A request with the same key claimed it between our read and our write: answer with its order.
  const winner = replayOf((await priceLines(db, input))[0]!, input);
  if (winner) return winner;
  throw new Error(`the Idempotency-Key of customer ${input.customerId} was claimed, then vanished`);
}

interface PricedLine {
  ord: number;
  sku: string;
  qty: number;
  unit_price: string | null;
  currency: string | null;
  total: string;
  /** The caller's live key (the same on every line), if the Idempotency-Key was used before. */
  key_order_id: string | null;
  key_request_hash: string | null;
}

/**
 * Each line priced from the catalogue (null for an unknown SKU), in the request's order, with the
 * order's total, and the caller's live key beside them: only this customer's keys are looked at.
 */
async function priceLines(db: Queryable, input: PlaceOrderInput): Promise<PricedLine[]> {
  const { rows } = await db.query<PricedLine>(
    `select i.ord::int as ord, i.sku, i.qty, p.price::text as unit_price, p.currency::text as currency,
            (sum(p.price * i.qty) over ())::text as total,
            k.order_id::text as key_order_id, k.request_hash as key_request_hash
       from unnest($1::text[], $2::int[]) with ordinality as i (sku, qty, ord)
       left join products p on p.sku = i.sku
       left join idempotency_keys k
              on k.customer_id = $3 and k.key = $4
             and k.created_at > now() - make_interval(hours => $5::int)
      order by i.ord`,
    [
      input.items.map((item) => item.sku),
      input.items.map((item) => item.qty),
      input.customerId,
      input.idempotencyKey ?? null,
      input.keyRetentionHours,
    ],
  );
  return rows;
}

function replayOf(line: PricedLine, input: PlaceOrderInput): PlaceOrderOutcome | undefined {
  if (line.key_order_id === null) return undefined;
  return line.key_request_hash === input.requestHash
    ? { kind: 'replayed', orderId: line.key_order_id }
    : { kind: 'idempotency_conflict', orderId: line.key_order_id };
}

/**
 * The write, one statement: the key's claim (when there is a key), then the order, its lines and its
 * event, each made only if the claim was. A live key of this customer's is not taken over, so the
 * statement writes nothing and returns false; an expired one, not yet pruned, is. The event's
 * `occurredAt` is the order's `created_at` (both `now()`, the statement's start), as the view shows it.
 */
async function insertOrder(
  db: Queryable,
  input: PlaceOrderInput,
  order: { orderId: string; lines: PricedLine[]; total: string; currency: string },
): Promise<boolean> {
  const { orderId, lines, total, currency } = order;
  const items: OrderLine[] = lines.map((l) => ({ sku: l.sku, qty: l.qty, unitPrice: l.unit_price! }));
  const event = buildEvent('order.placed', {
    id: randomUUID(),
    orderId,
    correlationId: input.correlationId,
    data: { customerId: input.customerId, email: input.email, items, total, currency },
  });
  const { rowCount } = await db.query(
    `with claimed as (
       insert into idempotency_keys (customer_id, key, request_hash, order_id)
       select $2, $8, $9, $1::uuid where $8::text is not null
       on conflict (customer_id, key) do update
          set request_hash = excluded.request_hash, order_id = excluded.order_id, created_at = now()
        where idempotency_keys.created_at <= now() - make_interval(hours => $10::int)
       returning 1
     ), placed as (
       insert into orders (id, customer_id, email, status, total, currency, correlation_id)
       select $1::uuid, $2, $3, 'PENDING', $4::numeric, $5, $6
        where $8::text is null or exists (select 1 from claimed)
       returning id
     ), lines as (
       insert into order_items (order_id, sku, qty, unit_price)
       select placed.id, t.sku, t.qty, t.unit_price
         from placed, unnest($11::text[], $12::int[], $13::numeric[]) as t (sku, qty, unit_price)
     )
     insert into event_outbox (event_id, type, order_id, payload, headers)
     select $7::uuid, 'order.placed', placed.id,
            ${stampedWithDatabaseTime('$14::jsonb')}, $15::jsonb
       from placed`,
    [
      orderId,
      input.customerId,
      input.email,
      total,
      currency,
      input.correlationId,
      event.id,
      input.idempotencyKey ?? null,
      input.requestHash,
      input.keyRetentionHours,
      lines.map((l) => l.sku),
      lines.map((l) => l.qty),
      lines.map((l) => l.unit_price),
      JSON.stringify(event),
      outboxHeaders(event),
    ],
  );
  return rowCount === 1;
}
