/**
 * The loyalty subscriber's own table (subscribers/loyalty): points per paid order, taken back when
 * the capture that earned them is refunded.
 */
import type { Queryable } from './pool.js';
import { freshEventCte } from './processed-events.js';

/**
 * Awards the order's points for the capture `reference`, once, with the event's dedupe record
 * (`freshEventCte`), in one statement. `awarded` false when the order already has an award, or when
 * this capture was refunded (`refunded`), before its payment.completed arrived or in a run since
 * (loyalty_refunded_captures); `fresh` false, changing nothing, when `consumer` applied the event
 * before. A revoked award for another capture (a retried order's earlier run) is replaced; one that
 * still stands keeps the order's points, and this capture waits (`waiting`: loyalty_waiting_captures)
 * for that one's refund, which is then this one's turn (revokeOrderPoints).
 */
export async function awardOrderPoints(
  db: Queryable,
  consumer: string,
  award: { orderId: string; customerId: string; points: number; eventId: string; reference: string },
): Promise<{ fresh: boolean; awarded: boolean; refunded: boolean; waiting: boolean }> {
  const { rows } = await db.query<{ fresh: boolean; awarded: boolean; refunded: boolean; waiting: boolean }>(
    `with ${freshEventCte(6, 4)}, unrefunded as (
       select event_id from fresh
       where not exists (
         select 1 from loyalty_refunded_captures where order_id = $1::uuid and reference = $5)
     ), awarded as (
       insert into loyalty_points (order_id, customer_id, points, event_id, reference)
       select $1::uuid, $2, $3, event_id, $5 from unrefunded
       on conflict (order_id) do update
         set customer_id = excluded.customer_id, points = excluded.points, event_id = excluded.event_id,
             reference = excluded.reference, revoked_at = null, awarded_at = now()
         where loyalty_points.revoked_at is not null
           and loyalty_points.reference is distinct from excluded.reference
       returning 1
     ), waiting as (
       insert into loyalty_waiting_captures (order_id, reference, customer_id, points, event_id)
       select $1::uuid, $5, $2, $3, event_id from unrefunded
       where not exists (select 1 from awarded)
         and not exists (select 1 from loyalty_points where order_id = $1::uuid and reference = $5)
       on conflict do nothing
       returning 1
     )
     select exists (select 1 from fresh) as fresh, exists (select 1 from awarded) as awarded,
            exists (select 1 from fresh) and not exists (select 1 from unrefunded) as refunded,
            exists (select 1 from waiting) as waiting`,
    [award.orderId, award.customerId, award.points, award.eventId, award.reference, consumer],
  );
  return rows[0]!;
}

/**
 * Takes back the points the capture `reference` earned (points 0, revoked); when that award has not
 * arrived yet, leaves a tombstone on the order. Either way the capture is recorded as refunded, so no
 * award is ever made for it, however late its payment.completed (a later run's award and refund
 * replace the order's tombstone, not this record). A capture of the order waiting for the award
 * (a retried run's, arrived while this one's award stood) then earns the order's points. False when
 * there was nothing of that capture's to take back (already revoked, or the award is another
 * capture's). In the caller's transaction.
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
  // The refunded capture never earns points, waiting or not.
  await tx.query(`delete from loyalty_waiting_captures where order_id = $1::uuid and reference = $2`, [
    revoke.orderId,
    revoke.reference,
  ]);
  // This refund freed the order's award: the latest capture waiting for it takes it. Never a refunded
  // one (dropped here): an award racing its capture's refund (two consumers) reads a snapshot from
  // before the refund committed, and may have put that capture on the list after the delete above.
  if (rowCount === 1) {
    await tx.query(
      `with stale as (
         delete from loyalty_waiting_captures w
          where w.order_id = $1::uuid
            and exists (select 1 from loyalty_refunded_captures r
                         where r.order_id = w.order_id and r.reference = w.reference)
       ), next as (
         delete from loyalty_waiting_captures
          where (order_id, reference) = (
            select w.order_id, w.reference from loyalty_waiting_captures w
             where w.order_id = $1::uuid
               and not exists (select 1 from loyalty_refunded_captures r
                                where r.order_id = w.order_id and r.reference = w.reference)
             order by w.received_at desc limit 1)
         returning order_id, reference, customer_id, points, event_id
       )
       update loyalty_points p
          set customer_id = next.customer_id, points = next.points, event_id = next.event_id,
              reference = next.reference, revoked_at = null, awarded_at = now()
         from next
        where p.order_id = next.order_id`,
      [revoke.orderId],
    );
  }
  return rowCount === 1;
}
