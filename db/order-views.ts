/**
 * The API's reads. They return the response shapes directly (money and timestamps as text made by
 * PostgreSQL, so nothing passes through a float or loses microseconds).
 */
import type { OrderStatus } from '../domain/order.js';
import type { OrderCursor } from '../api/cursor.js';
import type { OrderSummary, OrderView } from '../api/schemas.js';
import type { Queryable } from './pool.js';
import { isoText } from './timestamps.js';

/** The exact key for cursors: microseconds, UTC, no zone. */
const cursorTime = (column: string) => `to_char(${column} at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US')`;

/** One payment intent as the API shows it (PaymentSchema), from `payments p`. */
const PAYMENT_JSON = `json_build_object(
    'run', p.run, 'status', p.status, 'amount', p.amount::text, 'currency', p.currency::text,
    'reference', p.reference, 'failureReason', p.failure_reason,
    'createdAt', ${isoText('p.created_at')}, 'updatedAt', ${isoText('p.updated_at')})`;

/**
 * The full view of one order: lines, payments, notifications, event timeline; one statement. With
 * `customerId`, only that customer's order: another customer's reads as no order at all.
 */
export async function getOrder(
  db: Queryable,
  orderId: string,
  { customerId }: { customerId?: string | undefined } = {},
): Promise<Omit<OrderView, 'workflow'> | undefined> {
  const { rows } = await db.query<Omit<OrderView, 'workflow'>>(
    `select o.id::text as "id", o.customer_id as "customerId", o.email, o.status,
            o.status_reason as "statusReason", o.run, o.total::text as total, o.currency::text as currency,
            o.correlation_id as "correlationId",
            ${isoText('o.created_at')} as "createdAt", ${isoText('o.updated_at')} as "updatedAt",
            coalesce((select json_agg(json_build_object(
                        'sku', i.sku, 'qty', i.qty, 'unitPrice', i.unit_price::text,
                        'lineTotal', (i.unit_price * i.qty)::text) order by i.sku)
                        from order_items i where i.order_id = o.id), '[]'::json) as items,
            (select ${PAYMENT_JSON}
               -- The current run's: a retried order's new run has none until it charges.
               from payments p where p.order_id = o.id and p.run = o.run) as payment,
            coalesce((select json_agg(${PAYMENT_JSON} order by p.run)
                        from payments p where p.order_id = o.id), '[]'::json) as payments,
            coalesce((select json_agg(json_build_object(
                        'kind', n.kind, 'run', n.run, 'recipient', n.recipient, 'subject', n.subject,
                        'createdAt', ${isoText('n.created_at')}) order by n.id)
                        from notifications n where n.order_id = o.id), '[]'::json) as notifications,
            coalesce((select json_agg(json_build_object(
                        'eventId', t.event_id::text, 'type', t.type,
                        'occurredAt', ${isoText('t.occurred_at')},
                        'published', t.published_at is not null or e.status = 'PUBLISHED',
                        'publishedAt', ${isoText('coalesce(t.published_at, e.published_at)')})
                        order by t.seq)
                        -- The kept timeline; its outbox row, while there, says whether it was sent.
                        from order_events t left join event_outbox e on e.event_id = t.event_id
                       where t.order_id = o.id), '[]'::json) as events
       from orders o
      where o.id = $1::uuid and ($2::text is null or o.customer_id = $2)`,
    [orderId, customerId ?? null],
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
    `select id::text as "id", customer_id as "customerId", status, status_reason as "statusReason",
            total::text as total,
            currency::text as currency, ${isoText('created_at')} as "createdAt", ${isoText('updated_at')} as "updatedAt",
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
