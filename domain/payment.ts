/**
 * The payment intent of one saga run, and the keys the gateway knows it by. Pure and deterministic.
 *
 *   CHARGING ─► CAPTURED ─► REFUNDED      a capture, given back by a compensation
 *       │└────► DECLINED                  nothing taken, for good: the gateway's no, or the deadline
 *       │                                 with no attempt in doubt (failure_reason says which)
 *       └─────► VOIDED                    outcome unknown (lost answer, deadline): voided by its key
 *
 * CHARGING is committed before the gateway is called and stays until the gateway's answer is known,
 * so a charge whose answer was lost is never forgotten: the compensation voids it.
 */
export const PAYMENT_STATUSES = ['CHARGING', 'CAPTURED', 'DECLINED', 'VOIDED', 'REFUNDED'] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

/** Money taken (CAPTURED) or possibly taken (CHARGING): must be settled before anything else. */
export const MONEY_HELD_STATUSES: readonly PaymentStatus[] = ['CHARGING', 'CAPTURED'];

export function moneyIsHeld(status: PaymentStatus): boolean {
  return MONEY_HELD_STATUSES.includes(status);
}

/**
 * The idempotency key of a run's charge. Run 1 keeps the bare order id, the key charges had before
 * runs existed, so a charge of an order placed before then is still voided or refunded by its key; a
 * retry (run 2, …) charges under a key of its own, so the gateway does not replay run 1's answer.
 */
export function chargeKey(orderId: string, run: number): string {
  return run === 1 ? orderId : `${orderId}:run-${run}`;
}

/** Void and refund are separate operations at the gateway, with keys of their own. */
export const voidKey = (charge: string): string => `void-${charge}`;
export const refundKey = (charge: string): string => `refund-${charge}`;

/**
 * Why an amount carried by an event is not one this system could have produced, or undefined when
 * it could: a non-negative decimal with at most 2 decimals, at most `max` (EVENT_MAX_AMOUNT). An
 * event outside these bounds is refused outright (dead-lettered), never applied.
 */
export function implausibleAmount(amount: string, max: number): string | undefined {
  if (!/^\d{1,13}(\.\d{1,2})?$/.test(amount))
    return `amount ${JSON.stringify(amount.slice(0, 40))} is not a decimal with at most 2 decimals`;
  // A bound check, not arithmetic: a float is exact enough to compare against the bound.
  if (Number(amount) > max)
    return `amount ${amount} is above the plausible maximum of ${max} (EVENT_MAX_AMOUNT)`;
  return undefined;
}
