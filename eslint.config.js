// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

// Workflow code is replayed from history: it must stay deterministic, so no Node built-ins and no
// I/O libraries. Activities (activities/) do the I/O; workflows reach them through proxyActivities.
// domain/ (the state machines and rules) is imported by workflows too, so the same holds there.
const forbiddenInWorkflows = [
  ...builtinModules.flatMap((m) => [m, `node:${m}`]),
  'pg',
  'amqplib',
  'amqp-connection-manager',
  'hono',
  '@hono/*',
  'pino',
  '@temporalio/client',
  '@temporalio/worker',
  '@temporalio/activity',
];

export default tseslint.config(
  { ignores: ['node_modules/', '.tools/', '.data/', 'dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': [
        'error',
        {
          selector: "MemberExpression[object.name='process'][property.name='env']",
          message: 'Read configuration through lib/config.ts (loadConfig), never process.env directly.',
        },
      ],
    },
  },
  {
    files: ['lib/config.ts', 'test/**', 'scripts/**', 'eslint.config.js', 'vitest.config.ts', 'bench/**'],
    rules: { 'no-restricted-syntax': 'off' },
  },
  {
    files: ['workflows/**/*.ts', 'domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: forbiddenInWorkflows
            .filter((m) => !m.includes('*'))
            .map((name) => ({
              name,
              message: 'Workflow code must be deterministic: do I/O in an activity (activities/) instead.',
            })),
          patterns: [
            { group: ['@hono/*'], message: 'Workflow code must be deterministic: no HTTP in workflows.' },
            {
              group: ['**/activities/*', '!**/activities/index.js'],
              importNamePattern: '^(?!type)',
              message: 'Import activities as types only.',
            },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'setInterval', message: 'Use sleep() in a loop from @temporalio/workflow.' },
        { name: 'fetch', message: 'No I/O in workflows: call an activity.' },
      ],
      'no-restricted-properties': [
        'error',
        {
          object: 'Date',
          property: 'now',
          message: 'Workflow time is deterministic already, but prefer workflowInfo() / sleep() for clarity.',
        },
      ],
    },
  },
);
