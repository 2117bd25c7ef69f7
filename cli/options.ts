/** Option parsers shared by commands: a bad value is a usage error (exit 2) that says what to type. */
import { InvalidArgumentError } from 'commander';
import { MAX_CONCURRENCY } from '../ops/batch.js';

/** Larger counts mean nothing here, and PostgreSQL's `int` (a limit, a batch size) ends there. */
const MAX_COUNT = 2_147_483_647;

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_COUNT)
    throw new InvalidArgumentError(`give a whole number from 1 to ${MAX_COUNT}, not "${value}"`);
  return n;
}

/**
 * `--concurrency`: orders handled at once, each holding one of the command's database connections
 * while it waits on Temporal (ops/batch.ts MAX_CONCURRENCY, the CLI's pool size).
 */
export function concurrency(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_CONCURRENCY)
    throw new InvalidArgumentError(`give a whole number from 1 to ${MAX_CONCURRENCY}, not "${value}"`);
  return n;
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Ten years: longer than any retention, and far inside PostgreSQL's interval range. */
const MAX_DURATION_MS = 3650 * UNIT_MS.d!;

/**
 * A duration such as `90s`, `5m`, `2h` or `1d`, in milliseconds. A unit is required (`500ms` for
 * milliseconds), but for 0: `--older-than 5` could mean five of anything, and read as milliseconds it
 * selected every order.
 */
export function duration(value: string): number {
  const match = DURATION.exec(value.trim());
  if (!match || (match[2] === undefined && Number(match[1]) !== 0))
    throw new InvalidArgumentError(
      `give a duration with its unit, such as 500ms, 30s, 5m, 2h or 1d, not "${value}"`,
    );
  const ms = Math.round(Number(match[1]) * UNIT_MS[match[2] ?? 'ms']!);
  if (ms > MAX_DURATION_MS)
    throw new InvalidArgumentError(`give a duration of at most 3650d, not "${value}"`);
  return ms;
}
