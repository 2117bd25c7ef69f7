/**
 * The one way tests wait for something that happens asynchronously (a saga step, a message, a
 * row): poll `check` until it returns something truthy, or fail after `timeoutMs` saying what was
 * awaited and the last value seen.
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 15_000, intervalMs = 50, what = 'condition' } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}; last value: ${JSON.stringify(value)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** `waitFor` for a value read repeatedly until it passes `accept`; resolves to that value. */
export function waitUntil<T>(
  read: () => Promise<T>,
  accept: (value: T) => boolean,
  options: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  return waitFor(async () => {
    const value = await read();
    return accept(value) ? { value } : undefined;
  }, options).then(({ value }) => value);
}
