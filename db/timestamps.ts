/** Timestamps as PostgreSQL writes them for the API and the events. */

/**
 * SQL for a timestamptz as UTC ISO-8601 text with milliseconds, `2025-01-31T12:00:00.000Z`: the
 * shape of JavaScript's `toISOString()`, of every time the API answers with and of events'
 * `occurredAt`. Made by PostgreSQL, so a time read back never passes through a JavaScript Date.
 */
export const isoText = (column: string) =>
  `to_char(${column} at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
