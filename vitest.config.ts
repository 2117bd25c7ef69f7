import { defineConfig } from 'vitest/config';
import { TEST_NAMESPACE } from './test/helpers/temporal-namespace.js';

// Three projects, one tree (test/): fast unit tests, time-skipping workflow tests, and integration
// tests against the real PostgreSQL, RabbitMQ and Temporal dev server (scripts/infra.sh starts them).
export default defineConfig({
  test: {
    // One test file at a time: on 2 cores, workers, servers and tests competing for CPU make
    // timings noisy and the whole run no faster.
    maxWorkers: 1,
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 10_000 } },
      {
        test: {
          name: 'workflow',
          globalSetup: ['test/helpers/global-setup.ts'],
          include: ['test/workflow/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // One time-skipping server per file; files in parallel would fight over 2 cores.
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'integration',
          globalSetup: ['test/helpers/global-setup.ts', 'test/helpers/temporal-setup.ts'],
          // A namespace of their own on the shared dev server (unless one is given).
          env: { TEMPORAL_NAMESPACE: process.env.TEMPORAL_NAMESPACE ?? TEST_NAMESPACE },
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
