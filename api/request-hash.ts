/**
 * The fingerprint stored in `orders.request_hash`, compared when an `Idempotency-Key` is reused.
 *
 * It hashes the validated request in a canonical form (fixed key order, items sorted by SKU), so
 * retries that differ only in whitespace, key order or item order count as the same request, and
 * anything that changes the order (another SKU, quantity, customer or e-mail) does not.
 */
import { createHash } from 'node:crypto';
import type { CreateOrderBody } from './schemas.js';

export function canonicalOrderRequest(body: CreateOrderBody): string {
  const items = [...body.items]
    .sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0))
    .map((item) => [item.sku, item.qty]);
  return JSON.stringify({ v: 1, customer_id: body.customer_id, email: body.email, items });
}

export function orderRequestHash(body: CreateOrderBody): string {
  return createHash('sha256').update(canonicalOrderRequest(body)).digest('hex');
}
