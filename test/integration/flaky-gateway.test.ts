/**
 * A flaky payment gateway: every order still completes, through the saga's retries with backoff,
 * and the retries change nothing twice: one capture and one `payment.completed` per order, stock
 * taken once. The gateway fails each order's first two attempts, so the test is deterministic
 * (the configurable random rate, PAYMENT_TRANSIENT_FAILURE_RATE, is unit-tested with a pinned draw).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { GatewayUnavailableError, createSimulatedGateway } from '../../activities/payment-gateway.js';
import { loadConfig } from '../../lib/config.js';
import { createProduct } from '../helpers/db.js';
import { startSystem, type TestSystem } from '../helpers/system.js';
import { stockOf } from '../workflow/fixtures/orders.js';

const FAILURES_PER_ORDER = 2;
const attempts = new Map<string, number>();
const simulated = createSimulatedGateway(loadConfig({}));

let system: TestSystem;
beforeAll(async () => {
  system = await startSystem(
    {},
    {
      gateway: {
        async charge(request) {
          const n = (attempts.get(request.orderId) ?? 0) + 1;
          attempts.set(request.orderId, n);
          if (n <= FAILURES_PER_ORDER) throw new GatewayUnavailableError(`simulated: attempt ${n} failed`);
          return simulated.charge(request);
        },
        void: (request) => simulated.void(request),
        refund: (request) => simulated.refund(request),
      },
    },
  );
});
afterAll(async () => {
  await system?.stop();
});

it('each charge fails twice before it succeeds: 10 orders all complete, each charged and published once', async () => {
  const sku = await createProduct(system.db.pool, { stock: 10, price: '7.50' });
  const placed = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      system.placeOrder({
        customer_id: `FLAKY-${i}`,
        email: `flaky${i}@example.com`,
        items: [{ sku, qty: 1 }],
      }),
    ),
  );
  const ids = placed.map((p) => p.body.id);
  const orders = await Promise.all(ids.map((id) => system.waitForFinal(id, 60_000)));
  expect(orders.map((o) => o.status)).toEqual(Array(10).fill('COMPLETED'));
  expect(ids.map((id) => attempts.get(id))).toEqual(Array(10).fill(FAILURES_PER_ORDER + 1));

  const { rows } = await system.db.pool.query<{ payments: number; completed: number }>(
    `select (select count(*)::int from payments where order_id = any($1::uuid[]) and status = 'CAPTURED') as payments,
            (select count(*)::int from event_outbox where order_id = any($1::uuid[]) and type = 'payment.completed') as completed`,
    [ids],
  );
  expect(rows[0]).toEqual({ payments: 10, completed: 10 });
  expect(await stockOf(system.db.pool, sku)).toBe(0);
});
