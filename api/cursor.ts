/**
 * Keyset cursors for `GET /orders`, ordered by (created_at desc, id desc).
 *
 * The cursor is the last row's key, base64url-encoded JSON, and opaque to clients. `createdAt` is
 * PostgreSQL's own microsecond text (UTC, no zone), not a JS Date: a Date keeps milliseconds only,
 * and rounding the key would skip or repeat rows that share a millisecond.
 */
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
    // A real instant PostgreSQL accepts: the shape alone lets `2026-99-99T99:…` or year 0 through.
    .refine((t) => t >= '0001' && !Number.isNaN(Date.parse(`${t.slice(0, 23)}Z`))),
  i: z.guid(),
});

export function encodeCursor(cursor: OrderCursor): string {
  return Buffer.from(JSON.stringify({ t: cursor.createdAt, i: cursor.id }), 'utf8').toString('base64url');
}

/** Throws a 400 naming `cursor` for anything this API did not issue. */
export function decodeCursor(raw: string): OrderCursor {
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
  return { createdAt: result.data.t, id: result.data.i };
}
