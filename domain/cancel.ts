/**
 * Why an order is cancelled: a code from a fixed list, and the wording the customer's e-mail and
 * the order's status reason use for it. A client's free text (the note) is stored beside the order
 * for the record and never goes into an e-mail, so nothing a caller types reaches another person
 * verbatim; the saga only ever receives the wording below.
 */
export const CANCEL_CODES = [
  'customer_request',
  'changed_mind',
  'ordered_by_mistake',
  'duplicate_order',
  'found_better_price',
  'delivery_too_slow',
  'payment_issue',
  'suspected_fraud',
  'other',
] as const;
export type CancelCode = (typeof CANCEL_CODES)[number];

/**
 * Codes only an operator may give: their wording speaks for the shop ("cancelled by our team for
 * your protection"), and it reaches the customer's e-mail, the order's status reason and the
 * `order.cancelled` event that other services read. A customer choosing one would put the shop's
 * words, a fraud flag included, on their own cancel.
 */
const STAFF_CODES: ReadonlySet<CancelCode> = new Set<CancelCode>(['payment_issue', 'suspected_fraud']);

export function isStaffCancelCode(code: CancelCode): boolean {
  return STAFF_CODES.has(code);
}

/** What a cancel without a body means. */
export const DEFAULT_CANCEL_CODE: CancelCode = 'customer_request';
/** What the seed-era `{"reason": "..."}` body becomes: the reason is kept as the note. */
export const LEGACY_REASON_CODE: CancelCode = 'other';

const WORDING: Readonly<Record<CancelCode, string>> = {
  customer_request: 'cancelled at your request',
  changed_mind: 'cancelled at your request (changed your mind)',
  ordered_by_mistake: 'cancelled at your request (ordered by mistake)',
  duplicate_order: 'cancelled as a duplicate order',
  found_better_price: 'cancelled at your request (found a better price)',
  delivery_too_slow: 'cancelled at your request (delivery too slow)',
  payment_issue: 'cancelled because of a payment issue',
  suspected_fraud: 'cancelled by our team for your protection',
  other: 'cancelled on request',
};

/** The fixed text for a code: the saga's cancel reason, the status reason and the e-mail's. */
export function cancelWording(code: CancelCode): string {
  return WORDING[code];
}

/** The code a wording is the fixed text of, if it is one (the saga answers with the wording it used). */
export function cancelCodeOf(wording: string): CancelCode | undefined {
  return CANCEL_CODES.find((code) => WORDING[code] === wording);
}
