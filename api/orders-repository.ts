/**
 * The API's SQL. Reads return the response shapes directly (money and timestamps as text made by
 * PostgreSQL, so nothing passes through a float or loses microseconds); writes return outcomes as
 * tagged unions for the routes to turn into status codes.
 */
import { randomUUID } from 'node:crypto';
import { buildEvent, type OrderLine } from '../lib/events.js';
import { enqueueEvent } from '../db/outbox.js';
import { transitionOrder } from '../db/orders.js';
import { isUniqueViolation, withTransaction, type Pool, type Queryable } from '../db/pool.js';
import type { OrderStatus } from '../workflows/contract.js';
import type { OrderCursor } from './cursor.js';
import type { OrderSummary, OrderView, Product } from './schemas.js';

/** UTC ISO-8601 with milliseconds, made by PostgreSQL: `2025-01-31T12:00:00.000Z`. */
const iso = (column: string) => `to_char(${column} at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
/** The exact key for cursors: microseconds, UTC, no zone. */
const cursorTime = (column: string) => `to_char(${column} at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US')`;

const IDEMPOTENCY_CONSTRAINT = 'orders_idempotency_key_key';

// ----------------------------------------------------------------------------------- placing

export interface PlaceOrderInput {
  customerId: string;
  email: string;
  items: Array<{ sku: string; qty: number }>;
  idempotencyKey: string | undefined;
  requestHash: string;
  correlationId: string;
}

export type PlaceOrderOutcome =
  | { kind: 'created'; orderId: string }
  /** Same Idempotency-Key, same request: the order made the first time. */
  | { kind: 'replayed'; orderId: string }
  /** Same Idempotency-Key, different request. */
  | { kind: 'idempotency_conflict'; orderId: string }
  /** Indexes into `items` whose SKU is not in the catalogue. */
  | { kind: 'unknown_skus'; indexes: number[] }
  | { kind: 'mixed_currencies'; currencies: string[] };

/**
 * Writes the order, its lines and its `order.placed` event in one transaction, with prices read
 * from `products` and the total summed by PostgreSQL in NUMERIC.
 *
 * Idempotency: a reused key is looked up first (the cheap, common case); two requests racing with
 * one key both get past that, and the unique constraint lets exactly one insert win. The loser's
 * transaction rolls back entirely and it answers with the winner's order.
 */
export async function placeOrder(pool: Pool, input: PlaceOrderInput): Promise<PlaceOrderOutcome> {
  if (input.idempotencyKey !== undefined) {
    const existing = await replayFor(pool, input.idempotencyKey, input.requestHash);
    if (existing) return existing;
  }
  try {
    return await withTransaction(pool, (client) => insertOrder(client, input));
  } catch (err) {
    if (input.idempotencyKey !== undefined && isUniqueViolation(err, IDEMPOTENCY_CONSTRAINT)) {
      const existing = await replayFor(pool, input.idempotencyKey, input.requestHash);
      if (existing) return existing;
    }
    throw err;
  }
}

async function replayFor(
  db: Queryable,
  idempotencyKey: string,
  requestHash: string,
): Promise<PlaceOrderOutcome | undefined> {
  const { rows } = await db.query<{ id: string; request_hash: string | null }>(
    'select id::text, request_hash from orders where idempotency_key = $1',
    [idempotencyKey],
  );
  const row = rows[0];
  if (!row) return undefined;
  return row.request_hash === requestHash
    ? { kind: 'replayed', orderId: row.id }
    : { kind: 'idempotency_conflict', orderId: row.id };
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

  const orderId = randomUUID();
  const { rows: inserted } = await db.query<{ created_at: Date }>(
    `insert into orders (id, customer_id, email, status, total, currency, idempotency_key, request_hash,
                         correlation_id)
     values ($1::uuid, $2, $3, 'PENDING', $4::numeric, $5, $6, $7, $8)
     returning created_at`,
    [
      orderId,
      input.customerId,
      input.email,
      total,
      currency,
      input.idempotencyKey ?? null,
      input.requestHash,
      input.correlationId,
    ],
  );
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

// ----------------------------------------------------------------------------------- reading

/** The full view of one order: lines, payment, notifications, event timeline; one statement. */
export async function getOrder(
  db: Queryable,
  orderId: string,
): Promise<Omit<OrderView, 'workflow'> | undefined> {
  const { rows } = await db.query<Omit<OrderView, 'workflow'>>(
    `select o.id::text as "id", o.customer_id as "customerId", o.email, o.status,
            o.status_reason as "statusReason", o.total::text as total, o.currency::text as currency,
            o.correlation_id as "correlationId",
            ${iso('o.created_at')} as "createdAt", ${iso('o.updated_at')} as "updatedAt",
            coalesce((select json_agg(json_build_object(
                        'sku', i.sku, 'qty', i.qty, 'unitPrice', i.unit_price::text,
                        'lineTotal', (i.unit_price * i.qty)::text) order by i.sku)
                        from order_items i where i.order_id = o.id), '[]'::json) as items,
            (select json_build_object(
                      'status', p.status, 'amount', p.amount::text, 'currency', p.currency::text,
                      'reference', p.reference, 'failureReason', p.failure_reason,
                      'createdAt', ${iso('p.created_at')}, 'updatedAt', ${iso('p.updated_at')})
               from payments p where p.order_id = o.id) as payment,
            coalesce((select json_agg(json_build_object(
                        'kind', n.kind, 'recipient', n.recipient, 'subject', n.subject,
                        'createdAt', ${iso('n.created_at')}) order by n.id)
                        from notifications n where n.order_id = o.id), '[]'::json) as notifications,
            coalesce((select json_agg(json_build_object(
                        'eventId', e.event_id::text, 'type', e.type,
                        'occurredAt', coalesce(e.payload ->> 'occurredAt', ${iso('e.created_at')}),
                        'published', e.status = 'PUBLISHED', 'publishedAt', ${iso('e.published_at')})
                        order by e.id)
                        from event_outbox e where e.order_id = o.id), '[]'::json) as events
       from orders o
      where o.id = $1::uuid`,
    [orderId],
  );
  return rows[0];
}

export interface ListOrdersFilter {
  status?: OrderStatus | undefined;
  customerId?: string | undefined;
  after?: OrderCursor | undefined;
  limit: number;
}

/** One page, newest first; `next` is the key of the last row when more rows follow. */
export async function listOrders(
  db: Queryable,
  filter: ListOrdersFilter,
): Promise<{ orders: OrderSummary[]; next: OrderCursor | null }> {
  const where: string[] = [];
  const params: unknown[] = [];
  const param = (value: unknown) => `$${params.push(value)}`;
  if (filter.status !== undefined) where.push(`status = ${param(filter.status)}`);
  if (filter.customerId !== undefined) where.push(`customer_id = ${param(filter.customerId)}`);
  if (filter.after !== undefined) {
    where.push(
      `(created_at, id) < (${param(filter.after.createdAt)}::timestamp at time zone 'utc', ${param(filter.after.id)}::uuid)`,
    );
  }
  // One extra row tells whether there is a next page without a count.
  const limit = param(filter.limit + 1);
  const { rows } = await db.query<OrderSummary & { cursorTime: string }>(
    `select id::text as "id", customer_id as "customerId", status, total::text as total,
            currency::text as currency, ${iso('created_at')} as "createdAt", ${iso('updated_at')} as "updatedAt",
            ${cursorTime('created_at')} as "cursorTime"
       from orders
      ${where.length > 0 ? `where ${where.join(' and ')}` : ''}
      order by created_at desc, id desc
      limit ${limit}::int`,
    params,
  );
  const page = rows.slice(0, filter.limit);
  const last = page[page.length - 1];
  const next = rows.length > filter.limit && last ? { createdAt: last.cursorTime, id: last.id } : null;
  return { orders: page.map(({ cursorTime: _unused, ...summary }) => summary), next };
}

export async function getOrderStatus(db: Queryable, orderId: string): Promise<OrderStatus | undefined> {
  const { rows } = await db.query<{ status: OrderStatus }>('select status from orders where id = $1::uuid', [
    orderId,
  ]);
  return rows[0]?.status;
}

// -------------------------------------------------------------------------------- cancelling

export type DirectCancelOutcome =
  | { kind: 'cancelled' }
  | { kind: 'not_found' }
  /** The order moved on (its saga picked it up, or it is final): the saga owns the cancel now. */
  | { kind: 'not_pending'; status: OrderStatus };

/**
 * Cancels an order whose saga has not started: PENDING → CANCELLED plus `order.cancelled`, in one
 * transaction. Only PENDING qualifies; a RESERVED order holds stock that only the saga's
 * compensation may release, so it is never cancelled behind the saga's back.
 */
export async function cancelPendingOrder(
  pool: Pool,
  orderId: string,
  reason: string,
): Promise<DirectCancelOutcome> {
  return withTransaction(pool, async (client) => {
    const { rows } = await client.query<{ status: OrderStatus; correlation_id: string }>(
      'select status, correlation_id from orders where id = $1::uuid for update',
      [orderId],
    );
    const order = rows[0];
    if (!order) return { kind: 'not_found' };
    if (order.status !== 'PENDING') return { kind: 'not_pending', status: order.status };
    const result = await transitionOrder(client, orderId, 'CANCELLED', reason);
    if (!result.changed) return { kind: 'not_pending', status: result.status ?? order.status };
    // The order's own correlation id: the cancel joins the order's trail, like every saga event.
    await enqueueEvent(
      client,
      buildEvent('order.cancelled', {
        id: randomUUID(),
        orderId,
        correlationId: order.correlation_id,
        data: { reason },
      }),
    );
    return { kind: 'cancelled' };
  });
}

// ---------------------------------------------------------------------------------- products

const PRODUCT_COLUMNS = `sku, name, price::text as price, currency::text as currency, stock_qty as "stockQty"`;

export async function listProducts(db: Queryable): Promise<Product[]> {
  const { rows } = await db.query<Product>(`select ${PRODUCT_COLUMNS} from products order by sku`);
  return rows;
}

export async function getProduct(db: Queryable, sku: string): Promise<Product | undefined> {
  const { rows } = await db.query<Product>(`select ${PRODUCT_COLUMNS} from products where sku = $1`, [sku]);
  return rows[0];
}
