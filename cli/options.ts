/** Option parsers shared by commands: a bad value is a usage error (exit 2) that says what to type. */
import { InvalidArgumentError } from 'commander';

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidArgumentError(`give a whole number of at least 1, not "${value}"`);
  return n;
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration such as `90s`, `5m`, `2h` or `1d` (a bare number is milliseconds), in milliseconds. */
export function duration(value: string): number {
  const match = DURATION.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`give a duration such as 30s, 5m, 2h or 1d, not "${value}"`);
  return Math.round(Number(match[1]) * UNIT_MS[match[2] ?? 'ms']!);
}
