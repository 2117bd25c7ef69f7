/**
 * Inventory: reserve all items of an order or none, and give a reservation back (compensation).
 *
 * Product rows are locked in one fixed order (by sku) before they change, so two orders sharing
 * products cannot deadlock; the decrement is conditional and `stock_qty >= 0` is a CHECK, so nothing
 * can oversell even if this code were wrong.
 */
import { buildEvent, type EventData } from '../lib/events.js';
import type { Logger } from '../lib/logger.js';
import { enqueueEvent } from '../db/outbox.js';
import { transitionOrder } from '../db/orders.js';
import { withTransaction, type Pool, type PoolClient } from '../db/pool.js';
import { invalidStatus, loadItems, loadOrder, orderLogger, type ItemRow, type StepArgs } from './shared.js';

export type ReservationResult =
  | { outcome: 'RESERVED'; items: ItemRow[] }
  | { outcome: 'OUT_OF_STOCK'; unavailable: EventData['order.out_of_stock']['unavailable'] }
  /** The order was cancelled (by the API) before the saga reached it: nothing was reserved. */
  | { outcome: 'CANCELLED' };

export interface ReleaseArgs extends StepArgs {
  reason: string;
}

export interface ReleaseResult {
  /** False when there was nothing to give back: never reserved, or released already. */
  released: boolean;
  items: ItemRow[];
}

export interface InventoryDeps {
  pool: Pool;
  logger: Logger;
}

interface StoredEvent {
  type: string;
  payload: { data: Record<string, unknown> };
}

async function findEvent(tx: PoolClient, eventId: string): Promise<StoredEvent | undefined> {
  const { rows } = await tx.query<StoredEvent>(
    'select type, payload from event_outbox where event_id = $1::uuid',
    [eventId],
  );
  return rows[0];
}

/**
 * Locks the products in sku order and returns their stock; the fixed order is what prevents deadlocks
 * between reservations. `for no key update`, not `for update`: stock is not a key, and a plain
 * `for update` would also conflict with the `for key share` lock that every order_items insert takes
 * on its product (the foreign key), so placing orders would queue behind, and could deadlock with,
 * reservations of the same products.
 */
async function lockProducts(tx: PoolClient, skus: string[]): Promise<Map<string, number>> {
  const { rows } = await tx.query<{ sku: string; stock_qty: number }>(
    'select sku, stock_qty from products where sku = any($1::text[]) order by sku for no key update',
    [skus],
  );
  return new Map(rows.map((r) => [r.sku, r.stock_qty]));
}

export function createInventoryActivities({ pool, logger }: InventoryDeps) {
  /**
   * Reserves every item of the order or none. PENDING → RESERVED with `inventory.reserved`, or
   * PENDING → OUT_OF_STOCK with `order.out_of_stock`, each in the transaction that changes stock.
   */
  async function reserveInventory(args: StepArgs): Promise<ReservationResult> {
    const log = orderLogger(logger, 'reserveInventory', args);
    const result = await withTransaction(pool, async (tx): Promise<ReservationResult> => {
      // The order row lock serialises this with a cancel by the API and with a concurrent attempt.
      const order = await loadOrder(tx, args.orderId, { lock: true });

      // A retried attempt whose first try committed: answer from the event that try wrote.
      const prior = await findEvent(tx, args.eventId);
      if (prior?.type === 'inventory.reserved') {
        return { outcome: 'RESERVED', items: prior.payload.data.items as ItemRow[] };
      }
      if (prior?.type === 'order.out_of_stock') {
        const unavailable = prior.payload.data.unavailable as EventData['order.out_of_stock']['unavailable'];
        return { outcome: 'OUT_OF_STOCK', unavailable };
      }
      if (order.status === 'CANCELLED') return { outcome: 'CANCELLED' };
      if (order.status !== 'PENDING') throw invalidStatus(args.orderId, 'reserveInventory', order.status);

      const items = await loadItems(tx, args.orderId);
      const stock = await lockProducts(
        tx,
        items.map((i) => i.sku),
      );
      const unavailable = items
        .map((i) => ({ sku: i.sku, requested: i.qty, available: stock.get(i.sku) ?? 0 }))
        .filter((i) => i.available < i.requested);

      const event = { id: args.eventId, orderId: args.orderId, correlationId: args.correlationId };
      if (unavailable.length > 0) {
        const moved = await transitionOrder(tx, args.orderId, 'OUT_OF_STOCK', 'insufficient stock');
        if (!moved.changed) throw invalidStatus(args.orderId, 'reserveInventory', moved.status);
        await enqueueEvent(tx, buildEvent('order.out_of_stock', { ...event, data: { unavailable } }));
        return { outcome: 'OUT_OF_STOCK', unavailable };
      }

      const { rowCount } = await tx.query(
        `update products p set stock_qty = p.stock_qty - r.qty, updated_at = now()
         from unnest($1::text[], $2::int[]) as r(sku, qty)
         where p.sku = r.sku and p.stock_qty >= r.qty`,
        [items.map((i) => i.sku), items.map((i) => i.qty)],
      );
      if (rowCount !== items.length) {
        // Unreachable while the rows are locked; if it happens, roll back rather than half-reserve.
        throw new Error(`reserveInventory: stock of order ${args.orderId} changed under a lock`);
      }
      const moved = await transitionOrder(tx, args.orderId, 'RESERVED');
      if (!moved.changed) throw invalidStatus(args.orderId, 'reserveInventory', moved.status);
      await tx.query('update orders set stock_reserved_at = now() where id = $1::uuid', [args.orderId]);
      await enqueueEvent(tx, buildEvent('inventory.reserved', { ...event, data: { items } }));
      return { outcome: 'RESERVED', items };
    });
    log.info({ outcome: result.outcome }, 'inventory reservation');
    return result;
  }

  /**
   * Compensation: gives back exactly what the reservation took, once. The order row says whether it
   * holds stock (`stock_reserved_at`, set by the reserving transaction) and whether it was given back
   * (`stock_released_at`, set here): a reservation that never committed releases nothing, and a
   * retry releases nothing twice.
   */
  async function releaseInventory(args: ReleaseArgs): Promise<ReleaseResult> {
    const log = orderLogger(logger, 'releaseInventory', args);
    const result = await withTransaction(pool, async (tx): Promise<ReleaseResult> => {
      await loadOrder(tx, args.orderId, { lock: true });
      // A retried attempt whose first try committed: answer from the event that try wrote.
      const prior = await findEvent(tx, args.eventId);
      if (prior) return { released: true, items: prior.payload.data.items as ItemRow[] };

      const { rowCount } = await tx.query(
        `update orders set stock_released_at = now(), updated_at = now()
         where id = $1::uuid and stock_reserved_at is not null and stock_released_at is null`,
        [args.orderId],
      );
      if (rowCount === 0) return { released: false, items: [] };
      const items = await loadItems(tx, args.orderId); // all or none was reserved: all of them
      await lockProducts(
        tx,
        items.map((i) => i.sku),
      );
      await tx.query(
        `update products p set stock_qty = p.stock_qty + r.qty, updated_at = now()
         from unnest($1::text[], $2::int[]) as r(sku, qty)
         where p.sku = r.sku`,
        [items.map((i) => i.sku), items.map((i) => i.qty)],
      );
      await enqueueEvent(
        tx,
        buildEvent('inventory.released', {
          id: args.eventId,
          orderId: args.orderId,
          correlationId: args.correlationId,
          data: { items, reason: args.reason },
        }),
      );
      return { released: true, items };
    });
    log.info({ released: result.released, reason: args.reason }, 'inventory release');
    return result;
  }

  return { reserveInventory, releaseInventory };
}
