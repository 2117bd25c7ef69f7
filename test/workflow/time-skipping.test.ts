/**
 * Smoke test of the time-skipping setup itself: a workflow that sleeps one virtual day finishes in
 * well under a second of wall time. If this fails, the deadline tests cannot be trusted either.
 */
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createTimeSkippingEnv } from '../helpers/temporal.js';
import { quietTemporalRuntime } from './fixtures/harness.js';
import { ONE_DAY_MS, sleepOneDay } from './fixtures/sleeper-workflows.js';

let env: TestWorkflowEnvironment;
beforeAll(async () => {
  quietTemporalRuntime();
  env = await createTimeSkippingEnv();
});
afterAll(async () => {
  await env?.teardown();
});

test('a one-day durable timer is skipped: the workflow completes in well under 1 s of wall time', async () => {
  const taskQueue = `sleeper-${randomUUID()}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath: fileURLToPath(new URL('./fixtures/sleeper-workflows.ts', import.meta.url)),
  });
  await worker.runUntil(async () => {
    // Warm-up: the worker's first workflow pays for loading the bundle into a fresh V8 context.
    // That is start-up cost, not time skipping, and on a loaded 2-core machine it alone can near 1 s.
    await env.client.workflow.execute(sleepOneDay, { taskQueue, workflowId: `warm-up-${randomUUID()}` });

    const virtualStart = await env.currentTimeMs();
    const wallStart = performance.now();
    const result = await env.client.workflow.execute(sleepOneDay, {
      taskQueue,
      workflowId: `sleeper-${randomUUID()}`,
    });
    const wallMs = performance.now() - wallStart;
    const virtualMs = (await env.currentTimeMs()) - virtualStart;

    expect(result).toBe('woke up');
    expect(virtualMs).toBeGreaterThanOrEqual(ONE_DAY_MS);
    console.info(`one virtual day took ${wallMs.toFixed(0)} ms of wall time`);
    expect(wallMs).toBeLessThan(1000);
  });
});
