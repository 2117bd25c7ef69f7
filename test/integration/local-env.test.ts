/**
 * The SDK's `TestWorkflowEnvironment.createLocal` on the installed Temporal CLI (test/helpers/
 * temporal.ts hands it .tools/bin/temporal, so nothing is downloaded): an ephemeral dev server of
 * its own starts, a workflow with an activity runs to completion, and the server is torn down.
 */
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, expect, test } from 'vitest';
import * as activities from '../fixtures/bare-activities.js';
import { createLocalEnv, temporalCliPath } from '../helpers/temporal.js';

let env: TestWorkflowEnvironment;
beforeAll(async () => {
  expect(temporalCliPath(), 'the Temporal CLI is installed by scripts/infra.sh').toBeDefined();
  env = await createLocalEnv();
});
afterAll(async () => {
  await env?.teardown();
});

test('a workflow with an activity completes on an ephemeral dev server from the installed CLI', async () => {
  const taskQueue = `local-env-${randomUUID()}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath: fileURLToPath(new URL('../fixtures/bare-workflows.ts', import.meta.url)),
    activities,
  });
  const result = await worker.runUntil(
    env.client.workflow.execute('bareWorkflow', {
      taskQueue,
      workflowId: `bare-${randomUUID()}`,
      args: [42],
    }),
  );
  expect(result).toBe(42);
});
