/**
 * Why scripts/infra.sh starts the dev server with `journal_mode=WAL` and `synchronous=OFF`:
 * runs the same batch of bare workflows (one activity each) against two dev servers started side by
 * side in one run, one with SQLite's default pragmas and one with the chosen ones, and prints
 * throughput and the ratio.
 *
 *   npx tsx bench/dev-server-pragmas.ts [workflows=200] [concurrency=20]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { temporalCliPath } from '../test/helpers/temporal.js';
import * as activities from '../test/fixtures/bare-activities.js';

Runtime.install({ logger: new DefaultLogger('WARN') });

const here = path.dirname(fileURLToPath(import.meta.url));
const total = Number(process.argv[2] ?? 200);
const concurrency = Number(process.argv[3] ?? 20);

async function waitForServer(address: string): Promise<Connection> {
  for (let i = 0; i < 300; i++) {
    try {
      return await Connection.connect({ address, connectTimeout: 500 });
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`dev server at ${address} did not start`);
}

async function run(label: string, port: number, pragmas: string[]): Promise<number> {
  const cli = temporalCliPath();
  if (!cli) throw new Error('temporal CLI not found: run scripts/infra.sh first');
  const dir = mkdtempSync(path.join(tmpdir(), 'acme-bench-'));
  const args = ['server', 'start-dev', '--headless', '--port', String(port), '--log-level', 'error'];
  args.push(
    '--db-filename',
    path.join(dir, 'temporal.db'),
    ...pragmas.flatMap((p) => ['--sqlite-pragma', p]),
  );
  const server: ChildProcess = spawn(cli, args, { stdio: 'ignore' });
  try {
    const address = `127.0.0.1:${port}`;
    const connection = await waitForServer(address);
    const client = new Client({ connection });
    const taskQueue = `bench-${label}`;
    const worker = await Worker.create({
      connection: await NativeConnection.connect({ address }),
      taskQueue,
      workflowsPath: path.join(here, '../test/fixtures/bare-workflows.ts'),
      activities,
    });
    const started = performance.now();
    const done = await worker.runUntil(async () => {
      let next = 0;
      const lane = async () => {
        while (next < total) {
          const n = next++;
          await client.workflow.execute('bareWorkflow', { taskQueue, workflowId: `bench-${n}`, args: [n] });
        }
      };
      await Promise.all(Array.from({ length: concurrency }, lane));
      return performance.now() - started;
    });
    await connection.close();
    const perSecond = (total / done) * 1000;
    console.log(
      `${label.padEnd(24)} ${total} workflows in ${(done / 1000).toFixed(2)} s = ${perSecond.toFixed(1)}/s`,
    );
    return perSecond;
  } finally {
    server.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

const defaults = await run('default pragmas', 17301, []);
const tuned = await run('WAL + synchronous=OFF', 17302, ['journal_mode=WAL', 'synchronous=OFF']);
console.log(`ratio (tuned / default): ${(tuned / defaults).toFixed(2)}x`);
