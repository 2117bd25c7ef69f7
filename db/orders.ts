/**
 * The order row: reading it for the saga, its guarded status transitions, its stock markers and
 * reservation record, and the API's direct cancel.
 *
 * A transition is `update ... where status = any(<allowed from>)` (the lists live in domain/order.ts):
 * if the row is not in one of the expected states nothing changes and the caller learns the current
 * status. That makes every step safe to retry and concurrent writers (a cancel racing a reservation)
 * harmless. Steps of the saga also pass their run, so a stray run cannot move the order.
 */
import type { CancelCode } from '../domain/cancel.js';
import {
  ENDED_WITHOUT_SALE,
  GUARDED_TRANSITIONS,
  NEVER_RETRIED,
  TRANSITIONS,
  UNFINISHED_STATUSES,
  RETRY_STATUS_REASON,
  RUN_STOPPED_REASON,
  WAITING_FOR_PAYMENT_REASON,
  mayBeCancelledWithoutSaga,
  type OrderStatus,
} from '../domain/order.js';
import { buildEvent, runEventId, type EventData } from '../lib/events.js';
import { enqueueEvent } from './outbox.js';
import { paymentStatuses } from './payments.js';
import { lockProducts, returnStock } from './products.js';
import { withTransaction, type Pool, type Queryable } from './pool.js';

/** What reserveInventory answered for a run; kept on the order so a retried attempt answers the same. */
export type Reservation =
  | { run: number; outcome: 'RESERVED'; items: ItemRow[] }
  | { run: number; outcome: 'OUT_OF_STOCK'; unavailable: EventData['order.out_of_stock']['unavailable'] };

export interface OrderRow {
  id: string;
  customer_id: string;
  /** null once the customer's data was erased. */
  email: string | null;
  status: OrderStatus;
  total: string;
  currency: string;
  correlation_id: string;
  /** The order's current saga run; an operator's retry moves it on. */
  run: number;
  /** The run whose reservation took the stock, when it did; `stock_held` says whether it still holds it. */
  stock_run: number | null;
  stock_held: boolean;
  reservation: Reservation | null;
  /** The highest run whose workflow the bridge has started. */
  started_run: number | null;
  /** The highest run whose compensation has begun: no forward step of that run may act any more. */
  undo_run: number | null;
  /** The customer asked to cancel, even if too late (kept with the order, so a retry never revives it). */
  cancel_requested: boolean;
  /** The code of the first cancel recorded (domain/cancel.ts), if any. */
  cancel_code: CancelCode | null;
  /** The customer's personal data was erased (`orders erase-customer`). */
  erased: boolean;
  /** When the order was placed. */
  created_at: Date;
}

/** Whether the order's current run has begun to undo itself (`undo_run`): no forward step of it acts. */
export const currentRunUndone = (order: Pick<OrderRow, 'undo_run' | 'run'>): boolean =>
  (order.undo_run ?? 0) >= order.run;

export interface ItemRow {
  sku: string;
  qty: number;
}

/** The order, or undefined; `lock` takes the row lock that serialises every step of one order. */
export async function findOrder(
  db: Queryable,
  orderId: string,
  { lock = false }: { lock?: boolean } = {},
): Promise<OrderRow | undefined> {
  const { rows } = await db.query<OrderRow>(
    `select id, customer_id, email, status, total::text as total, currency, correlation_id, run, stock_run,
            (stock_reserved_at is not null and stock_released_at is null) as stock_held, reservation,
            started_run, undo_run, cancel_requested_at is not null as cancel_requested, cancel_code,
            erased_at is not null as erased, created_at
       from orders where id = $1::uuid ${lock ? 'for update' : ''}`,
    [orderId],
  );
  return rows[0];
}

export async function orderItems(db: Queryable, orderId: string): Promise<ItemRow[]> {
  const { rows } = await db.query<ItemRow>(
    'select sku, qty from order_items where order_id = $1::uuid order by sku',
    [orderId],
  );
  return rows;
}

/**
 * The order's status; with `customerId`, only if the order is that customer's (another customer's
 * order reads as no order at all).
 */
export async function getOrderStatus(
  db: Queryable,
  orderId: string,
  { customerId }: { customerId?: string | undefined } = {},
): Promise<OrderStatus | undefined> {
  const { rows } = await db.query<{ status: OrderStatus }>(
    'select status from orders where id = $1::uuid and ($2::text is null or customer_id = $2)',
    [orderId, customerId ?? null],
  );
  return rows[0]?.status;
}

/**
 * A cancel asked for, whatever its answer: once asked, the order is never run again by a retry (a
 * cancel refused as too late, or one its stopped saga could not take, would otherwise be overridden
 * by an operator's retry charging the customer). Orders that can never run again are left unmarked.
 *
 * @returns the order's status as of the mark (with `customerId`, only if the order is theirs): the
 * cancel is judged on it, so a retry that committed just before is seen, and one just after refuses.
 */
export async function recordCancelRequest(
  db: Queryable,
  orderId: string,
  { customerId }: { customerId?: string | undefined } = {},
): Promise<{ status: OrderStatus; runUndone: boolean } | undefined> {
  const { rows } = await db.query<Pick<OrderRow, 'status' | 'run' | 'undo_run'>>(
    `update orders
        set cancel_requested_at = case when status <> all($3::text[])
                                       then coalesce(cancel_requested_at, now()) else cancel_requested_at end
      where id = $1::uuid and ($2::text is null or customer_id = $2)
      returning status, run, undo_run`,
    [orderId, customerId ?? null, NEVER_RETRIED],
  );
  const row = rows[0];
  return row && { status: row.status, runUndone: currentRunUndone(row) };
}

/**
 * The words a cancelled order was cancelled with (its status reason), or null: not cancelled, or
 * cancelled before cancel codes were kept (000009), when the status reason was the customer's own
 * text, which is not repeated back.
 */
export async function cancelledWith(db: Queryable, orderId: string): Promise<string | null> {
  const { rows } = await db.query<{ wording: string | null }>(
    `select case when status = 'CANCELLED' and cancel_code is not null then status_reason end as wording
       from orders where id = $1::uuid`,
    [orderId],
  );
  return rows[0]?.wording ?? null;
}

/**
 * Records why a cancel was asked for: the code and the caller's note, for the record only (never
 * e-mailed). `confirmed`: the cancel is being carried out in this code's words (the saga answered
 * with them, or the order was cancelled in the database): it replaces a different code recorded
 * before, which can only be a request nobody answered; a retried cancel with the same code keeps the
 * first note. Unconfirmed (the saga did not answer; no run could take it): recorded only if nothing
 * is yet, so an outage does not lose the customer's words. Not once the customer's data is erased:
 * the erasure may have run between the cancel and this.
 */
export async function recordCancelReason(
  db: Queryable,
  orderId: string,
  { code, note, confirmed }: { code: string; note: string | undefined; confirmed: boolean },
): Promise<void> {
  await db.query(
    `update orders
        set cancel_note = case when cancel_code is null or ($4 and cancel_code <> $2) then $3 else cancel_note end,
            cancel_code = case when $4 then $2 else coalesce(cancel_code, $2) end
      where id = $1::uuid and erased_at is null`,
    [orderId, code, note ?? null, confirmed],
  );
}

export type TransitionResult =
  { changed: true; status: OrderStatus } | { changed: false; status: OrderStatus | undefined };

/**
 * Moves the order to `to` if its current status allows it (and, given `run`, only while that run is
 * the order's current one). `reason` explains the new status (a decline, a cancel); a status given
 * none has none, so an earlier status's reason (a retry's "retried: …") does not stay on a COMPLETED
 * order. `changed: false` with `status === to` means an earlier attempt already
 * did it (idempotent retry); `status` undefined means no such order.
 */
export async function transitionOrder(
  db: Queryable,
  orderId: string,
  to: OrderStatus,
  { reason = null, run }: { reason?: string | null; run?: number } = {},
): Promise<TransitionResult> {
  const updated = await db.query<{ status: OrderStatus }>(
    `update orders set status = $2, status_reason = $3, updated_at = now()
     where id = $1::uuid and status = any($4::text[]) and ($5::int is null or run = $5::int)
     returning status`,
    [orderId, to, reason, TRANSITIONS[to], run ?? null],
  );
  if (updated.rowCount === 1) return { changed: true, status: to };
  return { changed: false, status: await getOrderStatus(db, orderId) };
}

/** Whether the order's cancel (asked, recorded) was recorded before `at` (by the database's clock). */
export async function cancelRecordedBefore(db: Queryable, orderId: string, at: Date): Promise<boolean> {
  const { rows } = await db.query<{ before: boolean | null }>(
    'select cancel_requested_at < $2 as before from orders where id = $1::uuid',
    [orderId, at],
  );
  return rows[0]?.before === true;
}

/**
 * The run's charge could not reach the payment service and is being retried: the order says so to
 * whoever reads it (WAITING_FOR_PAYMENT_REASON), until its next status replaces the reason. Only a
 * RESERVED order of that run; its status and updated_at are left alone.
 */
export async function noteWaitingForPayment(db: Queryable, orderId: string, run: number): Promise<void> {
  await db.query(
    `update orders set status_reason = $3
     where id = $1::uuid and run = $2 and status = 'RESERVED' and status_reason is distinct from $3
       -- not for an attempt outliving its run's giving back
       and coalesce(undo_run, 0) < $2`,
    [orderId, run, WAITING_FOR_PAYMENT_REASON],
  );
}

/**
 * PAID → CANCELLED (GUARDED_TRANSITIONS.refundedPaidToCancelled): only when the capture of this run
 * was refunded, checked in the same statement.
 */
export async function cancelRefundedPaidOrder(
  db: Queryable,
  orderId: string,
  run: number,
  reason: string,
): Promise<boolean> {
  const { from, to } = GUARDED_TRANSITIONS.refundedPaidToCancelled;
  const { rowCount } = await db.query(
    `update orders set status = $4, status_reason = $3, updated_at = now()
     where id = $1::uuid and run = $2 and status = any($5::text[])
       and exists (select 1 from payments where order_id = $1::uuid and run = $2 and status = 'REFUNDED')`,
    [orderId, run, reason, to, from],
  );
  return rowCount === 1;
}

/**
 * reserveInventory's answer for `reservation.run`, in one statement: the order moves to RESERVED or
 * OUT_OF_STOCK (guarded as `transitionOrder` is, and only while that run is the order's current one),
 * keeps the answer for a retried attempt, and, when `stockTaken`, records that the run took the stock
 * in this transaction.
 */
export async function recordReservation(
  db: Queryable,
  orderId: string,
  reservation: Reservation,
  { stockTaken, reason = null }: { stockTaken: boolean; reason?: string | null },
): Promise<TransitionResult> {
  const to = reservation.outcome;
  const updated = await db.query<{ status: OrderStatus }>(
    `update orders
        set status = $2, status_reason = $3, updated_at = now(), reservation = $4::jsonb,
            stock_run = case when $6 then $5 else stock_run end,
            stock_reserved_at = case when $6 then now() else stock_reserved_at end,
            stock_released_at = case when $6 then null else stock_released_at end
      where id = $1::uuid and status = any($7::text[]) and run = $5
      returning status`,
    [orderId, to, reason, JSON.stringify(reservation), reservation.run, stockTaken, TRANSITIONS[to]],
  );
  if (updated.rowCount === 1) return { changed: true, status: to };
  return { changed: false, status: await getOrderStatus(db, orderId) };
}

/**
 * A retried order's new run takes over the stock an earlier, failed run still holds, instead of
 * reserving it a second time. Returns whether there was such stock.
 */
export async function adoptHeldStock(db: Queryable, orderId: string, run: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `update orders set stock_run = $2, updated_at = now()
     where id = $1::uuid and stock_reserved_at is not null and stock_released_at is null and stock_run < $2`,
    [orderId, run],
  );
  return rowCount === 1;
}

/** Marks the stock given back, if `run` holds it; false when it holds nothing (never took, or gave back). */
export async function markStockReleased(db: Queryable, orderId: string, run: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `update orders set stock_released_at = now(), updated_at = now()
     where id = $1::uuid and stock_run = $2 and stock_reserved_at is not null and stock_released_at is null`,
    [orderId, run],
  );
  return rowCount === 1;
}

/**
 * Orders whose current run has not started: PENDING (placed or retried) and not marked started by the
 * bridge. How long the oldest has waited is counted from when it became PENDING (`updated_at`).
 * Served by orders_status_idx: PENDING orders are few unless the pipeline is stuck or behind.
 */
export async function notStartedStats(db: Queryable): Promise<{ waiting: number; oldestAgeSeconds: number }> {
  const { rows } = await db.query<{ waiting: number; oldestAgeSeconds: number }>(
    `select count(*)::int as "waiting",
            coalesce(extract(epoch from now() - min(updated_at)), 0)::float8 as "oldestAgeSeconds"
       from orders
      where status = 'PENDING' and coalesce(started_run, 0) < run`,
  );
  return rows[0]!;
}

/**
 * Orders done with their stock that still hold it: ended without a sale, or their run was giving it
 * back (`undo_run`), and it was never released. A compensation waiting out an outage holds it for a
 * while; a run stopped before it gave it back (terminated by hand), for good, until `orders settle`.
 * Money held after a run stopped always comes with stock held (the compensations refund first, then
 * release), so this count finds those orders too. Served by orders_holding_stock_idx.
 */
export async function heldStockStats(db: Queryable): Promise<{ orders: number; oldestAgeSeconds: number }> {
  const { rows } = await db.query<{ orders: number; oldestAgeSeconds: number }>(
    `select count(*)::int as "orders",
            coalesce(extract(epoch from now() - min(updated_at)), 0)::float8 as "oldestAgeSeconds"
       from orders
      where stock_reserved_at is not null and stock_released_at is null and status <> 'COMPLETED'
        and (status = any($1::text[]) or coalesce(undo_run, 0) >= run)`,
    [ENDED_WITHOUT_SALE],
  );
  return rows[0]!;
}

/** The bridge started `run`'s workflow (Temporal accepted it, or had it already). */
export async function markRunStarted(db: Queryable, orderId: string, run: number): Promise<void> {
  await db.query(
    'update orders set started_run = greatest(coalesce(started_run, 0), $2) where id = $1::uuid',
    [orderId, run],
  );
}

/**
 * The run's compensation has begun (and, for a cancel, the customer asked to cancel): from now on
 * the run's forward steps refuse. Only the order's current run can mark it.
 */
export async function markRunUndone(
  db: Queryable,
  orderId: string,
  run: number,
  { cancelled }: { cancelled: boolean },
): Promise<void> {
  await db.query(
    `update orders
        set undo_run = greatest(coalesce(undo_run, 0), $2),
            cancel_requested_at = case when $3 then coalesce(cancel_requested_at, now()) else cancel_requested_at end,
            -- The run no longer charges: its order stops saying it waits on the payment service. A run
            -- that failed (not a cancel) while the order is unfinished says so instead of nothing.
            status_reason = case
              when not $3 and cancel_requested_at is null and status = any($5::text[])
                   and (status_reason is null or status_reason = any(array[$4, $7]))
                then $6
              when status_reason = $4 then null
              else status_reason end
      where id = $1::uuid and run = $2`,
    [
      orderId,
      run,
      cancelled,
      WAITING_FOR_PAYMENT_REASON,
      UNFINISHED_STATUSES,
      RUN_STOPPED_REASON,
      RETRY_STATUS_REASON,
    ],
  );
}

/**
 * Gives back the stock `run` holds: marks it released, returns every item's quantity (product rows
 * locked in sku order, as for taking it) and records `inventory.released`, in the caller's
 * transaction. False, changing nothing, when `run` holds none (never took it, or gave it back).
 */
export async function releaseStock(
  tx: Queryable,
  release: { orderId: string; run: number; items: ItemRow[]; reason: string; correlationId: string },
): Promise<boolean> {
  const { orderId, run, items, reason, correlationId } = release;
  if (!(await markStockReleased(tx, orderId, run))) return false;
  await lockProducts(
    tx,
    items.map((i) => i.sku),
  );
  await returnStock(tx, items);
  await enqueueEvent(
    tx,
    buildEvent('inventory.released', {
      id: runEventId(orderId, run, 'inventory.released'),
      orderId,
      correlationId,
      data: { items, reason },
    }),
  );
  return true;
}

export type DirectCancelOutcome =
  | { kind: 'cancelled'; placedAt: Date }
  | { kind: 'not_found' }
  /**
   * Not cancelled: the order moved on (its saga picked it up, or it is final: the saga owns the
   * cancel now), or only an operator can end it; `reason` says which, for the caller.
   */
  | { kind: 'refused'; status: OrderStatus; reason: string };

/**
 * Cancels an order that no saga run is running (the caller asked Temporal), when the domain allows it
 * (`mayBeCancelledWithoutSaga`): a PENDING order whose saga has not started, or a RESERVED or PAID
 * one whose failed run undid itself and holds no money. → CANCELLED plus `order.cancelled`, in one transaction
 * under the order's row lock. Stock the order still holds (a retried order waiting for its new run
 * holds what its failed run took; a failed run's release may itself have failed) is given back here,
 * with `inventory.released`, in the same transaction.
 */
export async function cancelOrderWithoutSaga(
  pool: Pool,
  orderId: string,
  reason: string,
): Promise<DirectCancelOutcome> {
  return withTransaction(pool, async (tx) => {
    const order = await findOrder(tx, orderId, { lock: true });
    if (!order) return { kind: 'not_found' };
    const verdict = mayBeCancelledWithoutSaga({
      status: order.status,
      runUndone: currentRunUndone(order),
      payments: order.status === 'PENDING' ? [] : await paymentStatuses(tx, orderId),
    });
    if (!verdict.ok) return { kind: 'refused', status: order.status, reason: verdict.reason };
    if (order.status === 'PAID') {
      // Its run refunded the capture (the rule above found no money held): the guarded edge.
      if (!(await cancelRefundedPaidOrder(tx, orderId, order.run, reason)))
        return { kind: 'refused', status: order.status, reason: 'its capture was not refunded' };
    } else {
      const result = await transitionOrder(tx, orderId, 'CANCELLED', { reason });
      if (!result.changed) {
        const status = result.status ?? order.status;
        return { kind: 'refused', status, reason: `order is ${status}` };
      }
    }
    await tx.query(
      'update orders set cancel_requested_at = coalesce(cancel_requested_at, now()) where id = $1::uuid',
      [orderId],
    );
    if (order.stock_held && order.stock_run !== null) {
      await releaseStock(tx, {
        orderId,
        run: order.stock_run,
        items: await orderItems(tx, orderId),
        reason,
        correlationId: order.correlation_id,
      });
    }
    // The order's own correlation id: the cancel joins the order's trail, like every saga event.
    await enqueueEvent(
      tx,
      buildEvent('order.cancelled', {
        id: runEventId(orderId, order.run, 'order.cancelled'),
        orderId,
        correlationId: order.correlation_id,
        data: { reason },
      }),
    );
    return { kind: 'cancelled', placedAt: order.created_at };
  });
}
