/**
 * Erasing one customer's personal data (ops/erase-customer.ts): e-mail addresses and free text go,
 * amounts, lines, statuses, payments and the event timeline stay. One transaction.
 */
import { FINAL_STATUSES } from '../domain/order.js';
import {
  ERASED,
  FREE_TEXT_FIELDS,
  PERSONAL_DATA_FIELDS,
  SYSTEM_REASON_TYPES,
} from '../domain/personal-data.js';
import type { Queryable } from './pool.js';

export interface CustomerFootprint {
  orderIds: string[];
  /** Every address the customer's orders held, for finding them in dead letters. */
  emails: string[];
  /** Orders whose saga may still need the address to send its e-mail. */
  openOrderIds: string[];
}

/** The customer's orders and addresses, locked against a concurrent change until the transaction ends. */
export async function customerFootprint(tx: Queryable, customerId: string): Promise<CustomerFootprint> {
  const { rows } = await tx.query<{ id: string; email: string | null; status: string }>(
    `select id::text, email, status from orders where customer_id = $1 order by created_at, id for update`,
    [customerId],
  );
  return {
    orderIds: rows.map((r) => r.id),
    emails: [...new Set(rows.flatMap((r) => (r.email ? [r.email] : [])))],
    openOrderIds: rows.filter((r) => !FINAL_STATUSES.has(r.status as never)).map((r) => r.id),
  };
}

/** Whose an order is and the address it holds, or undefined when there is no such order. */
export async function orderOwner(
  db: Queryable,
  orderId: string,
): Promise<{ customerId: string; email: string | null } | undefined> {
  const { rows } = await db.query<{ customerId: string; email: string | null }>(
    'select customer_id as "customerId", email from orders where id = $1::uuid',
    [orderId],
  );
  return rows[0];
}

export interface ErasedCounts {
  orders: number;
  notifications: number;
  outboxEvents: number;
  analyticsOrders: number;
}

/**
 * Clears the addresses and the customer's words (the cancel note) from the orders, their e-mails,
 * their outbox rows and the analytics record of their cancel. Idempotent: a second run changes nothing more.
 */
export async function eraseCustomerData(tx: Queryable, orderIds: string[]): Promise<ErasedCounts> {
  const ids = orderIds;
  const orders = await tx.query(
    `update orders
        set email = null, erased_at = coalesce(erased_at, now()), cancel_note = null,
            -- Before cancel codes (000009) a cancelled order's status reason was its customer's own
            -- text; since then it is the code's wording, the system's, and stays.
            status_reason = case when status = 'CANCELLED' and cancel_code is null and status_reason is not null
                                 then $2 else status_reason end
      where id = any($1::uuid[])
        and (email is not null or erased_at is null or cancel_note is not null
             or (status = 'CANCELLED' and cancel_code is null and status_reason is distinct from $2
                 and status_reason is not null))`,
    [ids, ERASED],
  );
  const notifications = await tx.query(
    `update notifications set recipient = null, body = $2
      where order_id = any($1::uuid[]) and (recipient is not null or body <> $2)`,
    [ids, ERASED],
  );
  const outbox = await tx.query(
    `update event_outbox e
        set payload = jsonb_set(e.payload, '{data}', scrubbed.data)
       from (select x.id,
                    case when x.type <> all($4::text[])
                         then (select coalesce(jsonb_object_agg(k, case when k = any($3::text[]) and jsonb_typeof(v) = 'string'
                                                                   then to_jsonb($5::text) else v end), '{}'::jsonb)
                                 from jsonb_each((x.payload -> 'data') - $2::text[]) as d(k, v))
                         else (x.payload -> 'data') - $2::text[] end as data
               from event_outbox x
              where x.order_id = any($1::uuid[]) and jsonb_typeof(x.payload -> 'data') = 'object') scrubbed
      where e.id = scrubbed.id and e.payload -> 'data' is distinct from scrubbed.data`,
    [ids, [...PERSONAL_DATA_FIELDS], [...FREE_TEXT_FIELDS], [...SYSTEM_REASON_TYPES], ERASED],
  );
  const analytics = await tx.query(
    `update analytics_orders set failure_detail = null
      where order_id = any($1::uuid[]) and final_status = 'CANCELLED' and failure_detail is not null`,
    [ids],
  );
  return {
    orders: orders.rowCount ?? 0,
    notifications: notifications.rowCount ?? 0,
    outboxEvents: outbox.rowCount ?? 0,
    analyticsOrders: analytics.rowCount ?? 0,
  };
}
