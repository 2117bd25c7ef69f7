/**
 * Runs one async step per input with at most `concurrency` in flight: enough parallelism for a
 * batch of hundreds of orders to finish in seconds, bounded so the tool never floods Temporal's
 * frontend (which rate-limits per namespace) the way an unbounded Promise.all would.
 */

export const DEFAULT_CONCURRENCY = 8;

/**
 * The most a command runs at once. Each order in flight may hold a database connection (and the
 * order's row lock) while Temporal answers, so the CLI's pool has this many (cli/context.ts): a lane
 * never fails for want of a connection while the others wait on a slow frontend.
 */
export const MAX_CONCURRENCY = 32;

/**
 * Results come back in input order, whatever order the steps finish in. `step` turns its own
 * failures into a result (a not-ok item): one bad order must not stop the batch.
 */
export async function mapBounded<T, R>(
  inputs: readonly T[],
  concurrency: number,
  step: (input: T) => Promise<R>,
  onDone: (result: R) => void = () => undefined,
): Promise<R[]> {
  const results = new Array<R>(inputs.length);
  let next = 0;
  const lane = async () => {
    while (next < inputs.length) {
      const index = next++;
      const result = await step(inputs[index]!);
      results[index] = result;
      onDone(result);
    }
  };
  const lanes = Math.max(1, Math.min(Math.floor(concurrency), inputs.length));
  await Promise.all(Array.from({ length: lanes }, lane));
  return results;
}
