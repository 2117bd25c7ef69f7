/**
 * The app's processes as real child processes, started the way `npm run up` starts them (compiled
 * by `npm run build`, `node dist/<entry>.js`, configured only through the variables of
 * lib/config.ts), any number of instances of each, every instance on ports of its own. For tests
 * that kill processes (SIGKILL leaves no chance to clean up, unlike stopping an in-process
 * component) and for measuring what a second instance buys.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseExposition, sumOf } from './metrics.js';
import { waitFor } from './amqp.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Each process's entry, and the setting of its probe server's port (the API serves probes on PORT). */
export const APP_PROCESSES = {
  api: { entry: 'dist/api/main.js', portKey: 'PORT' },
  outbox: { entry: 'dist/workers/outbox-main.js', portKey: 'OUTBOX_HTTP_PORT' },
  bridge: { entry: 'dist/workers/bridge-main.js', portKey: 'BRIDGE_HTTP_PORT' },
  worker: { entry: 'dist/workers/temporal-worker-main.js', portKey: 'WORKER_HTTP_PORT' },
  loyalty: { entry: 'dist/subscribers/loyalty/main.js', portKey: 'LOYALTY_HTTP_PORT' },
  analytics: { entry: 'dist/subscribers/analytics/main.js', portKey: 'ANALYTICS_HTTP_PORT' },
} as const;
export type AppProcess = keyof typeof APP_PROCESSES;

/**
 * How scripts/up.sh starts each process, in its order: `[env VAR=value …] node [--flag …]
 * dist/<entry>.js` (the worker's allocator setting and heap cap are such). Processes started here and
 * by the bench get the same environment and flags, and the deployment tests check that Compose and
 * the manifests run the same command (`command`: the words before the entry file).
 */
export interface UpScriptCommand {
  env: Record<string, string>;
  nodeFlags: string[];
  entry: string;
  command: string[];
}

export function upScriptCommands(): UpScriptCommand[] {
  const script = readFileSync(path.join(ROOT, 'scripts/up.sh'), 'utf8');
  return [
    ...script.matchAll(/(?:env ((?:[A-Z][A-Z0-9_]*=\S+ )+))?node ((?:--\S+ )*)(dist\/[\w./-]+\.js)/g),
  ].map((m) => {
    const assignments = (m[1] ?? '').split(' ').filter(Boolean);
    const nodeFlags = m[2]!.split(' ').filter(Boolean);
    return {
      env: Object.fromEntries(
        assignments.map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]),
      ),
      nodeFlags,
      entry: m[3]!,
      command: [...(assignments.length > 0 ? ['env', ...assignments] : []), 'node', ...nodeFlags],
    };
  });
}

/**
 * dist/ compiled from the current sources, once per process (scripts/build.mjs, < 1 s): before the
 * app's processes are started from it, here and by the bench.
 */
let built = false;
export function buildOnce(): void {
  if (built) return;
  const result = spawnSync(globalThis.process.execPath, ['scripts/build.mjs'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`scripts/build.mjs failed:\n${result.stdout}${result.stderr}`);
  built = true;
}

export interface Instance {
  process: AppProcess;
  /** 1, 2, …: as `npm run up -- --scale` numbers them. */
  n: number;
  /** `${process}${n}`, e.g. `worker2`. */
  name: string;
  /** Its HTTP port: the API's PORT, or the probe server's (`/metrics`, `/health`, `/ready`). */
  port: number;
  child: ChildProcess;
  exited: Promise<void>;
  logFile: string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `count[process]` instances of each process with `env` (the test's database, exchange,
 * queues and task queue) plus ports of their own; their output goes to files in `logDir`.
 */
export async function startInstances(
  count: Partial<Record<AppProcess, number>>,
  env: Record<string, string>,
  logDir: string,
): Promise<Instance[]> {
  buildOnce();
  const instances: Instance[] = [];
  for (const [process, n] of Object.entries(count) as Array<[AppProcess, number]>) {
    for (let i = 1; i <= n; i++) instances.push(await startInstance(process, i, env, logDir));
  }
  return instances;
}

async function startInstance(
  process: AppProcess,
  n: number,
  env: Record<string, string>,
  logDir: string,
): Promise<Instance> {
  const { entry, portKey } = APP_PROCESSES[process];
  const started = upScriptCommands().find((c) => c.entry === entry);
  const port = await freePort();
  const name = `${process}${n}`;
  const logFile = path.join(logDir, `${name}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(globalThis.process.execPath, [...(started?.nodeFlags ?? []), entry], {
    cwd: ROOT,
    env: {
      ...globalThis.process.env,
      ...started?.env,
      ...env,
      [portKey]: String(port),
      // Each instance's other side ports: none (the SDK exporter), or a free one.
      WORKER_SDK_METRICS_PORT: '0',
    },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { process, n, name, port, child, exited, logFile };
}

/** Waits until every instance answers `GET /ready` with 200 (its connections are up). */
export async function waitReady(instances: Instance[], timeoutMs = 90_000): Promise<void> {
  await Promise.all(
    instances.map((instance) =>
      waitFor(
        async () => {
          if (instance.child.exitCode !== null)
            throw new Error(`${instance.name} exited:\n${tail(instance.logFile)}`);
          return (await fetch(`http://127.0.0.1:${instance.port}/ready`).catch(() => undefined))?.ok;
        },
        { timeoutMs, intervalMs: 250, what: `${instance.name} to be ready` },
      ),
    ),
  );
}

/** The sum of a metric on one instance's `/metrics`; undefined when it does not answer. */
export async function scrape(instance: Instance, metric: string): Promise<number | undefined> {
  const res = await fetch(`http://127.0.0.1:${instance.port}/metrics`).catch(() => undefined);
  if (!res?.ok) return undefined;
  return sumOf(parseExposition(await res.text()), metric);
}

/** SIGKILL: no drain, no goodbye to the broker or the database, as when a machine dies. */
export async function kill(instance: Instance): Promise<void> {
  if (instance.child.exitCode === null && instance.child.signalCode === null) instance.child.kill('SIGKILL');
  await instance.exited;
}

/** SIGTERM (each drains), SIGKILL whatever is still there after `graceMs`. */
export async function stopAll(instances: Instance[], graceMs = 15_000): Promise<void> {
  await Promise.all(
    instances.map(async (instance) => {
      if (instance.child.exitCode !== null || instance.child.signalCode !== null) return;
      instance.child.kill('SIGTERM');
      const timer = setTimeout(() => instance.child.kill('SIGKILL'), graceMs);
      await instance.exited;
      clearTimeout(timer);
    }),
  );
}

export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
