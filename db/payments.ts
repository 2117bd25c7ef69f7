/**
 * Payment intents, one per saga run (domain/payment.ts has the states). Every statement says which
 * states it moves from, so a late or repeated writer changes nothing it should not.
 */
import type { PaymentFailureCode } from '../lib/events.js';
import { MONEY_HELD_STATUSES, type PaymentStatus } from '../domain/payment.js';
import type { Queryable } from './pool.js';

export interface PaymentRow {
  run: number;
  status: PaymentStatus;
  charge_key: string;
  reference: string | null;
  amount: string;
  currency: string;
  /** Why the payment failed (`<code>: <message>`, e.g. the gateway's decline); null while none did. */
  failure_reason: string | null;
}

const COLUMNS = 'run, status, charge_key, reference, amount::text as amount, currency, failure_reason';

export async function findPayment(
  db: Queryable,
  orderId: string,
  run: number,
): Promise<PaymentRow | undefined> {
  const { rows } = await db.query<PaymentRow>(
    `select ${COLUMNS} from payments where order_id = $1::uuid and run = $2`,
    [orderId, run],
  );
  return rows[0];
}

/** The status of every run's payment intent, oldest run first. */
export async function paymentStatuses(db: Queryable, orderId: string): Promise<PaymentStatus[]> {
  const { rows } = await db.query<{ status: PaymentStatus }>(
    'select status from payments where order_id = $1::uuid order by run',
    [orderId],
  );
  return rows.map((r) => r.status);
}

/** Every run's payment that holds money (CHARGING or CAPTURED: `moneyIsHeld`), by run. */
export async function heldPayments(
  db: Queryable,
  orderId: string,
): Promise<Array<{ run: number; status: PaymentStatus }>> {
  const { rows } = await db.query<{ run: number; status: PaymentStatus }>(
    'select run, status from payments where order_id = $1::uuid and status = any($2::text[]) order by run',
    [orderId, MONEY_HELD_STATUSES],
  );
  return rows;
}

/**
 * An attempt is about to call the gateway: the run's intent to charge (CHARGING), created or, when
 * the run has one already, with one more attempt in doubt (until its answer is known, it may take
 * money). One statement, in the transaction that checked the order under its lock, so a compensation
 * or a concurrent attempt's "not reached" sees every attempt that may have reached the gateway.
 * Returns the run's intent as it now stands (not CHARGING: settled, and nothing was added).
 */
export async function openChargeAttempt(
  db: Queryable,
  intent: { orderId: string; run: number; amount: string; currency: string; chargeKey: string },
): Promise<PaymentRow> {
  const { rows } = await db.query<PaymentRow>(
    `insert into payments (order_id, run, amount, currency, charge_key, status, attempts_in_doubt)
     values ($1::uuid, $2, $3::numeric, $4, $5, 'CHARGING', 1)
     on conflict (order_id, run) do update
       set attempts_in_doubt = payments.attempts_in_doubt + 1, updated_at = now()
       where payments.status = 'CHARGING'
     returning ${COLUMNS}`,
    [intent.orderId, intent.run, intent.amount, intent.currency, intent.chargeKey],
  );
  // No row: the run's intent is settled, and nothing was added; read it as it stands.
  return rows[0] ?? (await findPayment(db, intent.orderId, intent.run))!;
}

/**
 * The gateway said this attempt did not reach it: one fewer in doubt. When none is left, no attempt
 * can have taken money: the intent is removed, or, when the run's payment already failed (a deadline
 * recorded while this attempt was out), settled DECLINED with that failure's reason kept for the
 * operator. While an earlier attempt (a lost answer, a crash) is still in doubt, the intent stays
 * CHARGING, for the compensation to void. The caller holds the order's row lock, so this cannot
 * interleave with another attempt opening.
 */
export async function endAttemptNotReached(db: Queryable, orderId: string, run: number): Promise<void> {
  await db.query(
    `update payments set attempts_in_doubt = attempts_in_doubt - 1, updated_at = now()
     where order_id = $1::uuid and run = $2 and status = 'CHARGING' and attempts_in_doubt > 0`,
    [orderId, run],
  );
  await db.query(
    `update payments set status = 'DECLINED', updated_at = now()
     where order_id = $1::uuid and run = $2 and status = 'CHARGING' and attempts_in_doubt = 0
       and failure_reason is not null`,
    [orderId, run],
  );
  await db.query(
    `delete from payments where order_id = $1::uuid and run = $2 and status = 'CHARGING' and attempts_in_doubt = 0`,
    [orderId, run],
  );
}

/** The gateway's final no to a charge still CHARGING. */
export async function markDeclined(
  db: Queryable,
  orderId: string,
  run: number,
  reason: string,
): Promise<void> {
  await db.query(
    `update payments set status = 'DECLINED', failure_reason = $3, updated_at = now()
     where order_id = $1::uuid and run = $2 and status = 'CHARGING'`,
    [orderId, run, reason],
  );
}

/**
 * The capture, recorded whatever the order's status (the money was taken). False when the intent was
 * settled meanwhile (DECLINED, VOIDED, REFUNDED): the capture landed late and must be given back.
 */
export async function markCaptured(
  db: Queryable,
  orderId: string,
  run: number,
  reference: string,
): Promise<boolean> {
  const { rowCount } = await db.query(
    `update payments set status = 'CAPTURED', reference = $3, updated_at = now()
     where order_id = $1::uuid and run = $2 and status in ('CHARGING', 'CAPTURED', 'VOIDED')`,
    [orderId, run, reference],
  );
  return rowCount === 1;
}

/**
 * The run's payment failed. A decline is the gateway's final word (DECLINED); a deadline is not: an
 * attempt may have reached the gateway, so a CHARGING intent stays CHARGING for the compensation to
 * void. A run that never opened an intent gets a DECLINED row recording why.
 */
export async function recordPaymentFailure(
  db: Queryable,
  failure: {
    orderId: string;
    run: number;
    amount: string;
    currency: string;
    chargeKey: string;
    code: PaymentFailureCode;
    reason: string;
  },
): Promise<void> {
  await db.query(
    `insert into payments (order_id, run, amount, currency, charge_key, status, failure_reason)
     values ($1::uuid, $2, $3::numeric, $4, $5, 'DECLINED', $6)
     on conflict (order_id, run) do update
       set status = case when $7 = 'DECLINED' then 'DECLINED' else payments.status end,
           failure_reason = excluded.failure_reason, updated_at = now()
       where payments.status = 'CHARGING'`,
    [
      failure.orderId,
      failure.run,
      failure.amount,
      failure.currency,
      failure.chargeKey,
      `${failure.code}: ${failure.reason}`,
      failure.code,
    ],
  );
}

/** A charge of unknown outcome, voided at the gateway. */
export async function markVoided(db: Queryable, orderId: string, run: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `update payments set status = 'VOIDED', updated_at = now()
     where order_id = $1::uuid and run = $2 and status = 'CHARGING'`,
    [orderId, run],
  );
  return rowCount === 1;
}

/**
 * A capture given back (the gateway's refund succeeded); false if it was recorded already. From
 * VOIDED too: a capture that landed after its intent was voided, refunded at once.
 */
export async function markRefunded(
  db: Queryable,
  orderId: string,
  run: number,
  reference: string,
): Promise<boolean> {
  const { rowCount } = await db.query(
    `update payments set status = 'REFUNDED', reference = coalesce(reference, $3), updated_at = now()
     where order_id = $1::uuid and run = $2 and status in ('CHARGING', 'CAPTURED', 'VOIDED')`,
    [orderId, run, reference],
  );
  return rowCount === 1;
}
