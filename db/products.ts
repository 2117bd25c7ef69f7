/**
 * The catalogue and its stock. Stock changes lock the product rows in one fixed order (by sku) first,
 * so two orders sharing products cannot deadlock; the decrement is conditional and `stock_qty >= 0`
 * is a CHECK, so nothing can oversell even if the code above were wrong.
 */
import type { ItemRow } from './orders.js';
import type { Queryable } from './pool.js';

export interface Product {
  sku: string;
  name: string;
  price: string;
  currency: string;
  stockQty: number;
}

const PRODUCT_COLUMNS = `sku, name, price::text as price, currency::text as currency, stock_qty as "stockQty"`;

export async function listProducts(db: Queryable): Promise<Product[]> {
  const { rows } = await db.query<Product>(`select ${PRODUCT_COLUMNS} from products order by sku`);
  return rows;
}

export async function getProduct(db: Queryable, sku: string): Promise<Product | undefined> {
  const { rows } = await db.query<Product>(`select ${PRODUCT_COLUMNS} from products where sku = $1`, [sku]);
  return rows[0];
}

/**
 * Locks the products in sku order and returns their stock; the fixed order is what prevents deadlocks
 * between reservations. `for no key update`, not `for update`: stock is not a key, and a plain
 * `for update` would also conflict with the `for key share` lock that every order_items insert takes
 * on its product (the foreign key), so placing orders would queue behind, and could deadlock with,
 * reservations of the same products.
 */
export async function lockProducts(db: Queryable, skus: string[]): Promise<Map<string, number>> {
  const { rows } = await db.query<{ sku: string; stock_qty: number }>(
    'select sku, stock_qty from products where sku = any($1::text[]) order by sku for no key update',
    [skus],
  );
  return new Map(rows.map((r) => [r.sku, r.stock_qty]));
}

/** Takes every item's quantity, only where enough is left; returns how many products changed. */
export async function takeStock(db: Queryable, items: ItemRow[]): Promise<number> {
  const { rowCount } = await db.query(
    `update products p set stock_qty = p.stock_qty - r.qty, updated_at = now()
     from unnest($1::text[], $2::int[]) as r(sku, qty)
     where p.sku = r.sku and p.stock_qty >= r.qty`,
    [items.map((i) => i.sku), items.map((i) => i.qty)],
  );
  return rowCount ?? 0;
}

export async function returnStock(db: Queryable, items: ItemRow[]): Promise<void> {
  await db.query(
    `update products p set stock_qty = p.stock_qty + r.qty, updated_at = now()
     from unnest($1::text[], $2::int[]) as r(sku, qty)
     where p.sku = r.sku`,
    [items.map((i) => i.sku), items.map((i) => i.qty)],
  );
}
