/** Option parsers shared by commands: a bad value is a usage error (exit 2) that says what to type. */
import { InvalidArgumentError } from 'commander';

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidArgumentError(`give a whole number of at least 1, not "${value}"`);
  return n;
}
