/** Customer e-mails (simulated), recorded once per order, run and kind. */
import type { Queryable } from './pool.js';

export interface Notification {
  orderId: string;
  run: number;
  kind: string;
  recipient: string;
  subject: string;
  body: string;
}

/** Records the e-mail unless this run already sent one of its kind; true when it is new. */
export async function recordNotification(db: Queryable, n: Notification): Promise<boolean> {
  const { rowCount } = await db.query(
    `insert into notifications (order_id, run, kind, recipient, subject, body)
     values ($1::uuid, $2, $3, $4, $5, $6)
     on conflict (order_id, run, kind) do nothing`,
    [n.orderId, n.run, n.kind, n.recipient, n.subject, n.body],
  );
  return rowCount === 1;
}
