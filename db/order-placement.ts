/**
 * Placing an order: the order, its lines and its `order.placed` event in one transaction, with prices
 * read from the catalogue. Returns outcomes as a tagged union for the route to turn into status codes.
 */
import { randomUUID } from 'node:crypto';
import { buildEvent, type OrderLine } from '../lib/events.js';
import { enqueueEvent } from './outbox.js';
import { isUniqueViolation, withTransaction, type Pool, type Queryable } from './pool.js';

const IDEMPOTENCY_CONSTRAINT = 'idempotency_keys_pkey';

/** Thrown inside the transaction when the key is someone's already: rolls the new order back. */
class KeyTaken extends Error {}

export interface PlaceOrderInput {
  customerId: string;
  email: string;
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
 * Writes the order, its lines and its `order.placed` event in one transaction, with prices read
 * from `products` and the total summed by PostgreSQL in NUMERIC.
 *
 * Idempotency: keys are the customer's own (`idempotency_keys (customer_id, key)`), honoured for
 * `keyRetentionHours`. A reused key is looked up first (the cheap, common case); two requests racing
 * with one key both get past that, and the primary key lets exactly one claim win. The loser's
 * transaction rolls back entirely and it answers with the winner's order.
 */
export async function placeOrder(pool: Pool, input: PlaceOrderInput): Promise<PlaceOrderOutcome> {
  if (input.idempotencyKey !== undefined) {
    const existing = await replayFor(pool, input);
    if (existing) return existing;
  }
  try {
    return await withTransaction(pool, (client) => insertOrder(client, input));
  } catch (err) {
    if (err instanceof KeyTaken || isUniqueViolation(err, IDEMPOTENCY_CONSTRAINT)) {
      const existing = await replayFor(pool, input);
      if (existing) return existing;
    }
    throw err;
  }
}

/** The caller's live key, if any: only this customer's keys are ever looked at. */
async function replayFor(db: Queryable, input: PlaceOrderInput): Promise<PlaceOrderOutcome | undefined> {
  const { rows } = await db.query<{ order_id: string; request_hash: string }>(
    `select order_id::text, request_hash
       from idempotency_keys
      where customer_id = $1 and key = $2 and created_at > now() - make_interval(hours => $3::int)`,
    [input.customerId, input.idempotencyKey, input.keyRetentionHours],
  );
  const row = rows[0];
  if (!row) return undefined;
  return row.request_hash === input.requestHash
    ? { kind: 'replayed', orderId: row.order_id }
    : { kind: 'idempotency_conflict', orderId: row.order_id };
}

/**
 * Claims the key for the new order, in its transaction. A live key of this customer's is not
 * taken over (the caller rolls back and replays it); an expired one, not yet pruned, is.
 */
async function claimKey(db: Queryable, input: PlaceOrderInput, orderId: string): Promise<void> {
  const { rowCount } = await db.query(
    `insert into idempotency_keys (customer_id, key, request_hash, order_id)
     values ($1, $2, $3, $4::uuid)
     on conflict (customer_id, key) do update
        set request_hash = excluded.request_hash, order_id = excluded.order_id, created_at = now()
      where idempotency_keys.created_at <= now() - make_interval(hours => $5::int)`,
    [input.customerId, input.idempotencyKey, input.requestHash, orderId, input.keyRetentionHours],
  );
  if (rowCount !== 1) throw new KeyTaken();
}

interface PricedLine {
  ord: number;
  sku: string;
  qty: number;
  unit_price: string | null;
  currency: string | null;
  total: string;
}

async function insertOrder(db: Queryable, input: PlaceOrderInput): Promise<PlaceOrderOutcome> {
  const { rows: lines } = await db.query<PricedLine>(
    `select i.ord::int as ord, i.sku, i.qty, p.price::text as unit_price, p.currency::text as currency,
            (sum(p.price * i.qty) over ())::text as total
       from unnest($1::text[], $2::int[]) with ordinality as i (sku, qty, ord)
       left join products p on p.sku = i.sku
      order by i.ord`,
    [input.items.map((item) => item.sku), input.items.map((item) => item.qty)],
  );
  const unknown = lines.filter((line) => line.unit_price === null).map((line) => line.ord - 1);
  if (unknown.length > 0) return { kind: 'unknown_skus', indexes: unknown };
  const currencies = [...new Set(lines.map((line) => line.currency!))];
  if (currencies.length !== 1) return { kind: 'mixed_currencies', currencies };
  const currency = currencies[0]!;
  const total = lines[0]!.total;
  if (Number(total) > input.maxTotal) return { kind: 'total_too_large', total, max: input.maxTotal };

  const orderId = randomUUID();
  const { rows: inserted } = await db.query<{ created_at: Date }>(
    `insert into orders (id, customer_id, email, status, total, currency, correlation_id)
     values ($1::uuid, $2, $3, 'PENDING', $4::numeric, $5, $6)
     returning created_at`,
    [orderId, input.customerId, input.email, total, currency, input.correlationId],
  );
  if (input.idempotencyKey !== undefined) await claimKey(db, input, orderId);
  await db.query(
    `insert into order_items (order_id, sku, qty, unit_price)
     select $1::uuid, sku, qty, unit_price from unnest($2::text[], $3::int[], $4::numeric[]) as t (sku, qty, unit_price)`,
    [orderId, lines.map((l) => l.sku), lines.map((l) => l.qty), lines.map((l) => l.unit_price)],
  );
  const items: OrderLine[] = lines.map((l) => ({ sku: l.sku, qty: l.qty, unitPrice: l.unit_price! }));
  await enqueueEvent(
    db,
    buildEvent('order.placed', {
      id: randomUUID(),
      orderId,
      correlationId: input.correlationId,
      occurredAt: inserted[0]!.created_at,
      data: { customerId: input.customerId, email: input.email, items, total, currency },
    }),
  );
  return { kind: 'created', orderId };
}
