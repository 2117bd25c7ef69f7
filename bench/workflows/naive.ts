/**
 * The NAIVE bare baseline. FIXED FOR GOOD: do not change this file, or figures stop being comparable
 * with earlier runs (add a new workflow instead).
 *
 * Four sequential no-op activities; a 10-minute timer is started after the first and cancelled after
 * the second (the shape of "a step raced against a deadline"). Started directly by a client.
 */
import { CancellationScope, proxyActivities, sleep } from '@temporalio/workflow';
import type * as activities from './activities.js';

const { noop } = proxyActivities<typeof activities>({ startToCloseTimeout: '10 seconds' });

export async function naiveBare(n: number): Promise<number> {
  await noop(1);
  const timer = new CancellationScope();
  const deadline = timer.run(() => sleep('10 minutes')).catch(() => undefined);
  await noop(2);
  timer.cancel();
  await deadline;
  await noop(3);
  await noop(4);
  return n;
}
