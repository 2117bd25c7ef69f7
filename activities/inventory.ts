/**
 * Inventory: reserve all items of an order or none, and give a reservation back (compensation).
 * The SQL, and why product rows are locked in sku order, is in db/products.ts.
 */
import { stockIsSold } from '../domain/order.js';
import { buildEvent, runEventId, type EventData } from '../lib/events.js';
import type { Logger } from '../lib/logger.js';
import type { OrderOutcomeMetrics } from '../lib/metrics.js';
import { enqueueEvent } from '../db/outbox.js';
import {
  adoptHeldStock,
  markRunUndone,
  orderItems,
  recordReservation,
  releaseStock,
  type ItemRow,
  type OrderRow,
  type Reservation,
} from '../db/orders.js';
import { findPayment } from '../db/payments.js';
import { withTransaction, type Pool, type PoolClient } from '../db/pool.js';
import { lockProducts, takeStock } from '../db/products.js';
import {
  assertNotUndone,
  invalidStatus,
  isCurrentRun,
  lockOrderFor,
  orderLogger,
  runOf,
  staleRun,
  type CompensationArgs,
  type StepArgs,
} from './shared.js';

export type ReservationResult =
  | { outcome: 'RESERVED'; items: ItemRow[] }
  | { outcome: 'OUT_OF_STOCK'; unavailable: EventData['order.out_of_stock']['unavailable'] }
  /** The order was cancelled (by the API) before the saga reached it: nothing was reserved. */
  | { outcome: 'CANCELLED' };

export type ReleaseArgs = CompensationArgs;

export interface ReleaseResult {
  /** True once this run's stock is back (by this attempt or an earlier one). */
  released: boolean;
  items: ItemRow[];
  /** Why nothing was given back, when nothing was. */
  skipped?: string;
}

export interface InventoryDeps {
  pool: Pool;
  logger: Logger;
  /** Counts an order that reserveInventory ended OUT_OF_STOCK, once (not for a retried attempt). */
  metrics: OrderOutcomeMetrics;
}

/** What a run's recorded reservation answers to a retried attempt. */
function answer(reservation: Reservation): ReservationResult {
  return reservation.outcome === 'RESERVED'
    ? { outcome: 'RESERVED', items: reservation.items }
    : { outcome: 'OUT_OF_STOCK', unavailable: reservation.unavailable };
}

export function createInventoryActivities({ pool, logger, metrics }: InventoryDeps) {
  /**
   * Reserves every item of the order or none, for the order's current run: PENDING → RESERVED with
   * `inventory.reserved`, or PENDING → OUT_OF_STOCK with `order.out_of_stock`, in the transaction
   * that changes stock and records the answer on the order.
   */
  async function reserveInventory(args: StepArgs): Promise<ReservationResult> {
    const log = orderLogger(logger, 'reserveInventory', args);
    let reservedNow: { placedAt: Date } | undefined; // set when this attempt made the reservation
    const result = await withTransaction(pool, async (tx): Promise<ReservationResult> => {
      // The order row lock serialises this with a cancel by the API and with a concurrent attempt.
      const order = await lockOrderFor(tx, args, 'reserveInventory');
      if (!isCurrentRun(order, args)) throw staleRun(order, args, 'reserveInventory');
      if (order.status === 'CANCELLED') return { outcome: 'CANCELLED' };
      assertNotUndone(order, args, 'reserveInventory');
      // An attempt of this run committed before (a retry, a reset, a lost answer): the same answer.
      if (order.reservation?.run === runOf(args)) return answer(order.reservation);
      if (order.status !== 'PENDING') throw invalidStatus(args.orderId, 'reserveInventory', order.status);
      reservedNow = { placedAt: order.created_at };
      return reserve(tx, order, args);
    });
    // Committed: an order this attempt found out of stock ends here (an earlier attempt's answer,
    // returned again above, was counted by that attempt).
    if (reservedNow && result.outcome === 'OUT_OF_STOCK')
      metrics.finished('OUT_OF_STOCK', reservedNow.placedAt);
    log.info({ outcome: result.outcome }, 'inventory reservation');
    return result;
  }

  async function reserve(tx: PoolClient, order: OrderRow, args: StepArgs): Promise<ReservationResult> {
    const run = runOf(args);
    const items = await orderItems(tx, args.orderId);
    const event = { orderId: args.orderId, correlationId: args.correlationId };

    // A retried order whose failed run still held the stock: the retry handed it to this run (or, for
    // a retry made before that was done, it is taken over now).
    const adopted =
      order.stock_held && (order.stock_run === run || (await adoptHeldStock(tx, args.orderId, run)));
    if (!adopted) {
      const stock = await lockProducts(
        tx,
        items.map((i) => i.sku),
      );
      const unavailable = items
        .map((i) => ({ sku: i.sku, requested: i.qty, available: stock.get(i.sku) ?? 0 }))
        .filter((i) => i.available < i.requested);
      if (unavailable.length > 0) {
        const moved = await recordReservation(
          tx,
          args.orderId,
          { run, outcome: 'OUT_OF_STOCK', unavailable },
          { stockTaken: false, reason: 'insufficient stock' },
        );
        if (!moved.changed) throw invalidStatus(args.orderId, 'reserveInventory', moved.status);
        await enqueueEvent(
          tx,
          buildEvent('order.out_of_stock', {
            ...event,
            id: runEventId(args.orderId, run, 'order.out_of_stock'),
            data: { unavailable },
          }),
        );
        return { outcome: 'OUT_OF_STOCK', unavailable };
      }
      if ((await takeStock(tx, items)) !== items.length) {
        // Unreachable while the rows are locked; if it happens, roll back rather than half-reserve.
        throw new Error(`reserveInventory: stock of order ${args.orderId} changed under a lock`);
      }
    }
    const moved = await recordReservation(
      tx,
      args.orderId,
      { run, outcome: 'RESERVED', items },
      { stockTaken: !adopted },
    );
    if (!moved.changed) throw invalidStatus(args.orderId, 'reserveInventory', moved.status);
    await enqueueEvent(
      tx,
      buildEvent('inventory.reserved', {
        ...event,
        id: runEventId(args.orderId, run, 'inventory.reserved'),
        // A consumer summing reservations and releases must not count taken-over stock twice.
        data: adopted ? { items, takenOver: true } : { items },
      }),
    );
    return { outcome: 'RESERVED', items };
  }

  /**
   * Compensation: gives back exactly what this run's reservation took, once. The order row says
   * which run holds stock (`stock_run`, set by the reserving transaction) and whether it was given
   * back: a reservation that never committed releases nothing, a retry releases nothing twice, and a
   * stray run (a reset or second run of an order whose stock was sold or belongs to another run)
   * finds nothing of its own and changes nothing. Sold stock (the order is paid and its capture
   * stands) is never given back.
   */
  async function releaseInventory(args: ReleaseArgs): Promise<ReleaseResult> {
    const log = orderLogger(logger, 'releaseInventory', args);
    const result = await withTransaction(pool, async (tx): Promise<ReleaseResult> => {
      const order = await lockOrderFor(tx, args, 'releaseInventory');
      const run = runOf(args);
      if (!isCurrentRun(order, args)) {
        return { released: false, items: [], skipped: `order is on run ${order.run}, not ${run}` };
      }
      // From here on, no forward step of this run may act: a late reservation would not be released.
      if (order.status !== 'COMPLETED') {
        await markRunUndone(tx, args.orderId, run, { cancelled: args.cancelled ?? false });
      }
      if (order.stock_run !== run) return { released: false, items: [], skipped: 'this run took no stock' };
      const items = await orderItems(tx, args.orderId); // all or none was reserved: all of them
      if (!order.stock_held) return { released: true, items }; // an earlier attempt gave it back
      // The compensations run in reverse, so a PAID order's capture was refunded before this runs;
      // one whose capture stands has sold its stock.
      if (stockIsSold(order.status, (await findPayment(tx, args.orderId, run))?.status)) {
        return { released: false, items: [], skipped: `order is ${order.status}: its stock is sold` };
      }
      const released = await releaseStock(tx, {
        orderId: args.orderId,
        run,
        items,
        reason: args.reason,
        correlationId: args.correlationId,
      });
      if (!released) return { released: false, items: [], skipped: 'this run holds no stock' };
      return { released: true, items };
    });
    if (result.skipped)
      log.warn({ skipped: result.skipped }, 'inventory release: nothing of this run to give back');
    else log.info({ released: result.released, reason: args.reason }, 'inventory release');
    return result;
  }

  return { reserveInventory, releaseInventory };
}
