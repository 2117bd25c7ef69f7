/**
 * Test environments on installed servers. The SDK's own download (the last fallback) needs the
 * internet; scripts/infra.sh installs both servers under .tools/bin instead.
 *
 * Resolution order for each: an environment variable, then .tools/bin, then PATH, then the SDK.
 */
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { SEARCH_ATTRIBUTES } from '../../workflows/contract.js';

const TOOLS_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../.tools/bin');

function findExecutable(envVar: string, name: string): string | undefined {
  const candidates = [
    process.env[envVar],
    path.join(TOOLS_BIN, name),
    ...(process.env.PATH ?? '').split(path.delimiter).map((dir) => path.join(dir, name)),
  ];
  for (const candidate of candidates) {
    if (!candidate) continue;
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next one
    }
  }
  return undefined;
}

/** The Java time-skipping test server (wrapper script), or undefined to let the SDK download one. */
export const timeSkippingServerPath = () =>
  findExecutable('TEMPORAL_TEST_SERVER_PATH', 'temporal-test-server');
/** The Temporal CLI (for its dev server), or undefined to let the SDK download one. */
export const temporalCliPath = () => findExecutable('TEMPORAL_CLI_PATH', 'temporal');

/**
 * The SDK gives the Java test server 5 s to open its port, a fixed limit; a JVM starting on a busy
 * 2-core machine (the suites in parallel, a benchmark beside them) can take longer, which failed a
 * whole workflow suite once. A start that timed out is tried again, twice at most.
 */
export async function createTimeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  const executable = timeSkippingServerPath();
  const options = executable
    ? { server: { executable: { type: 'existing-path' as const, path: executable } } }
    : {};
  for (let attempt = 1; ; attempt++) {
    try {
      return await TestWorkflowEnvironment.createTimeSkipping(options);
    } catch (err) {
      if (attempt >= 3 || !/did not start within/.test(String(err))) throw err;
    }
  }
}

export async function createLocalEnv(): Promise<TestWorkflowEnvironment> {
  const executable = temporalCliPath();
  return TestWorkflowEnvironment.createLocal(
    executable
      ? {
          server: {
            executable: { type: 'existing-path', path: executable },
            searchAttributes: Object.values(SEARCH_ATTRIBUTES),
          },
        }
      : {},
  );
}
