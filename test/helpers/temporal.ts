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

export async function createTimeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  const executable = timeSkippingServerPath();
  return TestWorkflowEnvironment.createTimeSkipping(
    executable ? { server: { executable: { type: 'existing-path', path: executable } } } : {},
  );
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
