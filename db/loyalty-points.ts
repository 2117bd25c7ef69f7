/** The loyalty subscriber's own table (subscribers/loyalty): points awarded per paid order. */
import type { Queryable } from './pool.js';

/** Awards the order's points once; false when the order already has its award. */
export async function awardOrderPoints(
  tx: Queryable,
  award: { orderId: string; customerId: string; points: number; eventId: string },
): Promise<boolean> {
  const { rowCount } = await tx.query(
    `insert into loyalty_points (order_id, customer_id, points, event_id)
     values ($1::uuid, $2, $3, $4::uuid)
     on conflict (order_id) do nothing`,
    [award.orderId, award.customerId, award.points, award.eventId],
  );
  return rowCount === 1;
}
