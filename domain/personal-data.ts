/**
 * What in an event is a person's data, for erasing one customer (`orders erase-customer`): the
 * e-mail address, and free text a person wrote (a cancel note or reason, which the compensations
 * copy into `inventory.released` and `payment.refunded`). Ids and amounts stay: an order keeps its
 * money and its history. The one rule for the outbox (in SQL, db/erasure.ts) and the dead-letter
 * queues (here).
 */

/** Removed from an event's `data`. */
export const PERSONAL_DATA_FIELDS = ['email', 'note'] as const;
/** Replaced, not removed, so that the event still parses for its consumers after a re-drive. */
export const FREE_TEXT_FIELDS = ['reason'] as const;
/** Event types whose `reason` is the system's own words (the gateway's decline), not a person's. */
export const SYSTEM_REASON_TYPES: readonly string[] = ['payment.failed'];
export const ERASED = '(erased)';

/** The event with its personal data gone; anything that is not an event envelope comes back as is. */
export function scrubEvent(event: unknown): unknown {
  if (typeof event !== 'object' || event === null) return event;
  const envelope = event as { type?: unknown; data?: unknown };
  if (typeof envelope.data !== 'object' || envelope.data === null) return event;
  const data: Record<string, unknown> = { ...(envelope.data as Record<string, unknown>) };
  for (const field of PERSONAL_DATA_FIELDS) delete data[field];
  if (!SYSTEM_REASON_TYPES.includes(String(envelope.type))) {
    for (const field of FREE_TEXT_FIELDS) if (typeof data[field] === 'string') data[field] = ERASED;
  }
  return { ...envelope, data };
}
