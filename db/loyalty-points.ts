/**
 * The loyalty subscriber's own table (subscribers/loyalty): points per paid order, taken back when
 * the capture that earned them is refunded.
 */
import type { Queryable } from './pool.js';

/**
 * Awards the order's points for the capture `reference`, once. False when the order already has an
 * award, or when this capture was refunded, before its payment.completed arrived or in a run since
 * (loyalty_refunded_captures). A revoked award for another capture (a retried order's earlier run)
 * is replaced.
 */
export async function awardOrderPoints(
  tx: Queryable,
  award: { orderId: string; customerId: string; points: number; eventId: string; reference: string },
): Promise<boolean> {
  const { rowCount } = await tx.query(
    `insert into loyalty_points (order_id, customer_id, points, event_id, reference)
     select $1::uuid, $2, $3, $4::uuid, $5
     where not exists (
       select 1 from loyalty_refunded_captures where order_id = $1::uuid and reference = $5)
     on conflict (order_id) do update
       set customer_id = excluded.customer_id, points = excluded.points, event_id = excluded.event_id,
           reference = excluded.reference, revoked_at = null, awarded_at = now()
       where loyalty_points.revoked_at is not null
         and loyalty_points.reference is distinct from excluded.reference`,
    [award.orderId, award.customerId, award.points, award.eventId, award.reference],
  );
  return rowCount === 1;
}

/**
 * Takes back the points the capture `reference` earned (points 0, revoked); when that award has not
 * arrived yet, leaves a tombstone on the order. Either way the capture is recorded as refunded, so no
 * award is ever made for it, however late its payment.completed (a later run's award and refund
 * replace the order's tombstone, not this record). False when there was nothing of that capture's to
 * take back (already revoked, or the award is another capture's).
 */
export async function revokeOrderPoints(
  tx: Queryable,
  revoke: { orderId: string; eventId: string; reference: string },
): Promise<boolean> {
  await tx.query(
    `insert into loyalty_refunded_captures (order_id, reference) values ($1::uuid, $2)
     on conflict do nothing`,
    [revoke.orderId, revoke.reference],
  );
  const { rowCount } = await tx.query(
    `insert into loyalty_points (order_id, customer_id, points, event_id, reference, revoked_at)
     values ($1::uuid, null, 0, $2::uuid, $3, now())
     on conflict (order_id) do update
       set points = 0, revoked_at = now()
       where loyalty_points.revoked_at is null
         -- Awards from before references were kept were run 1's, the order's only capture then.
         and (loyalty_points.reference = excluded.reference or loyalty_points.reference is null)`,
    [revoke.orderId, revoke.eventId, revoke.reference],
  );
  return rowCount === 1;
}
