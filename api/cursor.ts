/**
 * Keyset cursors for `GET /orders`, ordered by (created_at desc, id desc).
 *
 * The cursor is the last row's key, base64url-encoded JSON, and opaque to clients. `createdAt` is
 * PostgreSQL's own microsecond text (UTC, no zone), not a JS Date: a Date keeps milliseconds only,
 * and rounding the key would skip or repeat rows that share a millisecond.
 *
 * A cursor is bound to the caller and the filter it was issued for (a digest of both, `b`): used by
 * another caller or with other filters it is a 400, so a page can never continue another listing.
 * The binding is a consistency check, not the access control: every page's query is confined to
 * the caller's own orders whatever cursor it is given.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ApiError } from './errors.js';

export interface OrderCursor {
  /** `YYYY-MM-DDTHH:MM:SS.ffffff`, UTC. */
  createdAt: string;
  id: string;
}

const cursorSchema = z.strictObject({
  t: z
    .string()
    .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/)
    // A real instant PostgreSQL accepts: the shape alone lets `2026-99-99T99:…` or year 0 through,
    // and Date.parse alone takes 30 February (rolling it over to March), which PostgreSQL refuses.
    .refine((t) => t >= '0001' && isCalendarInstant(t.slice(0, 23))),
  i: z.guid(),
  b: z.string().regex(/^[A-Za-z0-9_-]{22}$/),
});

/** `YYYY-MM-DDTHH:MM:SS.mmm` names an instant that exists, as written (no day rolled over). */
function isCalendarInstant(isoMillis: string): boolean {
  const at = new Date(`${isoMillis}Z`);
  return !Number.isNaN(at.getTime()) && at.toISOString().slice(0, 23) === isoMillis;
}

/** What a cursor is bound to: who listed, and with which filters (everything but the page size). */
export interface CursorBinding {
  caller: string;
  status?: string | undefined;
  customerId?: string | undefined;
}

function bindingDigest(binding: CursorBinding): string {
  return createHash('sha256')
    .update(
      JSON.stringify([
        'orders-cursor/v2',
        binding.caller,
        binding.status ?? null,
        binding.customerId ?? null,
      ]),
    )
    .digest('base64url')
    .slice(0, 22);
}

export function encodeCursor(cursor: OrderCursor, binding: CursorBinding): string {
  return Buffer.from(
    JSON.stringify({ t: cursor.createdAt, i: cursor.id, b: bindingDigest(binding) }),
    'utf8',
  ).toString('base64url');
}

/** Throws a 400 naming `cursor` for anything this API did not issue for this caller and filter. */
export function decodeCursor(raw: string, binding: CursorBinding): OrderCursor {
  let parsed: unknown;
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(raw)) throw new Error('not base64url');
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const result = cursorSchema.safeParse(parsed);
  if (!result.success) {
    throw new ApiError(400, 'validation_failed', 'Invalid query: check cursor.', {
      fields: [{ path: 'cursor', message: 'is not a cursor this API issued; start again without one' }],
    });
  }
  if (result.data.b !== bindingDigest(binding)) {
    throw new ApiError(400, 'validation_failed', 'Invalid query: check cursor.', {
      fields: [
        {
          path: 'cursor',
          message:
            'was issued for another caller or other filters; pass the same filters, or start again without one',
        },
      ],
    });
  }
  return { createdAt: result.data.t, id: result.data.i };
}
