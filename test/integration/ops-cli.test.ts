/**
 * The `orders` CLI around the ops/ functions (what each command does is tested through those, in
 * ops-dlq, ops-replay, ops-reset): exit codes 0 / 1 / 2, `--json` printing the CommandResult alone
 * on stdout, the human output. Once as a process (`npx tsx cli/orders.ts …`), pointed at this
 * file's queues through the environment the way an operator points it at a system; the rest in
 * this process (runCli), which is the same code minus seconds of start-up per call.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createCliContext } from '../../cli/context.js';
import { runCli } from '../../cli/program.js';
import { DEAD_LETTER_HEADERS } from '../../lib/amqp/consumer.js';
import { assertConsumerQueue, dlqName } from '../../lib/amqp/topology.js';
import type { CommandResult } from '../../ops/result.js';
import { openObserver, shortId, testConfig, waitFor, type Observer } from '../helpers/amqp.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const id = shortId();
const config = testConfig(id);
let observer: Observer;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function orders(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn('npx', ['tsx', 'cli/orders.ts', ...args], {
      cwd: REPO,
      env: {
        ...process.env,
        AMQP_EXCHANGE: config.AMQP_EXCHANGE,
        BRIDGE_QUEUE: config.BRIDGE_QUEUE,
        LOYALTY_QUEUE: config.LOYALTY_QUEUE,
        ANALYTICS_QUEUE: config.ANALYTICS_QUEUE,
        TEMPORAL_TASK_QUEUE: config.TEMPORAL_TASK_QUEUE,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const messageId = randomUUID();

beforeAll(async () => {
  observer = await openObserver(config.AMQP_URL);
  const channel = await observer.admin.createConfirmChannel();
  await assertConsumerQueue(channel, {
    exchange: config.AMQP_EXCHANGE,
    queue: config.BRIDGE_QUEUE,
    routingKeys: ['order.placed'],
  });
  // A dead letter as the bridge's consumer leaves one (lib/amqp/consumer.ts deadLetter).
  channel.sendToQueue(dlqName(config.BRIDGE_QUEUE), Buffer.from('{not json'), {
    messageId,
    type: 'order.placed',
    persistent: true,
    headers: {
      [DEAD_LETTER_HEADERS.reason]: 'PoisonMessageError: body is not JSON',
      [DEAD_LETTER_HEADERS.attempts]: 1,
      [DEAD_LETTER_HEADERS.queue]: config.BRIDGE_QUEUE,
      [DEAD_LETTER_HEADERS.routingKey]: 'order.placed',
    },
  });
  await channel.waitForConfirms();
  await channel.close();
});

afterAll(async () => {
  await observer?.cleanup(config.AMQP_EXCHANGE, [config.BRIDGE_QUEUE, config.LOYALTY_QUEUE]);
  await observer?.close();
});

/** The CLI in this process, with this file's queues; what it printed, and its exit code. */
async function ordersInProcess(...args: string[]): Promise<Run> {
  const run = { code: null as number | null, stdout: '', stderr: '' };
  const sink = (key: 'stdout' | 'stderr') =>
    new Writable({ write: (chunk: Buffer, _enc, done) => ((run[key] += chunk.toString()), done()) });
  const io = { stdout: sink('stdout'), stderr: sink('stderr'), stderrIsTTY: false };
  run.code = await runCli(args, io, ({ verbose }) => createCliContext({ verbose, config }));
  return run;
}

test('as a process: exit 0 and the CommandResult alone on stdout with --json', async () => {
  const shown = await orders('dlq', 'show', '--json');

  expect(shown.code, shown.stderr).toBe(0);
  const result = JSON.parse(shown.stdout) as CommandResult;
  expect(result).toMatchObject({
    command: 'dlq show',
    ok: true,
    items: [
      {
        id: messageId,
        ok: true,
        outcome: 'dead-lettered',
        details: { reason: 'PoisonMessageError: body is not JSON', originalQueue: config.BRIDGE_QUEUE },
      },
    ],
  });
  expect(await observer.messageCount(dlqName(config.BRIDGE_QUEUE))).toBe(1);
});

test('dlq show prints each message with its body, which redrive and drop refer to', async () => {
  await waitFor(async () => (await observer.messageCount(dlqName(config.BRIDGE_QUEUE))) === 1);
  const shown = await orders('dlq', 'show');
  expect(shown.code, shown.stderr).toBe(0);
  expect(shown.stdout).toContain(`${messageId}  dead-lettered`);
  expect(shown.stdout).toContain('body={not json');
});

test('exit 1 when an item is refused or failed, with its reason in the JSON', async () => {
  const notFound = await ordersInProcess('reset', randomUUID(), '--reason', 'cli test', '--json');

  expect(notFound.code, notFound.stderr).toBe(1);
  expect(JSON.parse(notFound.stdout)).toMatchObject({
    command: 'reset',
    ok: false,
    items: [{ ok: false, outcome: 'not-found', reason: expect.stringMatching(/check the order id/) }],
  });
});

test('exit 2 for a usage error, saying what to type, with nothing on stdout', async () => {
  for (const args of [
    ['dlq', 'redrive', '--queue', 'orders.nope', '--json'],
    ['replay', '--json'],
    ['replay', 'not-an-id', '--json'],
    ['reset', randomUUID(), '--json'], // no --reason
    ['dlq', 'show', '--limit', '0'],
    ['bogus'],
  ]) {
    const usage = await ordersInProcess(...args);
    expect(usage.code, args.join(' ')).toBe(2);
    expect(usage.stdout, args.join(' ')).toBe('');
  }
  const unknownQueue = await ordersInProcess('dlq', 'redrive', '--queue', 'orders.nope');
  expect(unknownQueue.stderr).toMatch(/unknown queue "orders\.nope": --queue takes one of/);
});

test('human output: one line per item and a summary', async () => {
  const listed = await ordersInProcess('dlq', 'list');

  expect(listed.code, listed.stderr).toBe(0);
  expect(listed.stdout).toContain(`ok   ${dlqName(config.BRIDGE_QUEUE)}  listed  messages=1`);
  expect(listed.stdout).toMatch(/dlq list: 3 item\(s\), 3 ok, 0 refused or failed\n$/);
});
