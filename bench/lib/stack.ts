/**
 * The bench's own slice of the local stack, made at the start of a run and removed at its end:
 * a database built by the project's migrations and seed (db/cli.ts), a Temporal dev server of its
 * own (or a namespace on the configured server), RabbitMQ names of its own, and the app processes
 * started as scripts/up.sh starts them (`node dist/<entry>.js`, compiled by `npm run build`),
 * pointed at all of these through the configuration variables of lib/config.ts. A running
 * `npm run up` is never touched.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Connection } from '@temporalio/client';
import amqplib, { type Channel } from 'amqplib';
import pg from 'pg';
import { amqpUser } from '../../lib/amqp/connection.js';
import { CONFIG_KEYS } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { ensureNamespace, ensureSearchAttributes } from '../../lib/temporal-namespace.js';
import { upScriptCommands } from '../../test/helpers/processes.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface StackNames {
  id: string;
  database: string;
  databaseUrl: string;
  /** A database of the server that is not the bench's, for reading statistics without adding to them. */
  adminUrl: string;
  namespace: string;
  exchange: string;
  /** Every `*_QUEUE` setting of lib/config.ts, named for the bench (BRIDGE_QUEUE → bench.<id>.bridge). */
  queues: Record<string, string>;
  taskQueue: string;
  bareTaskQueue: string;
  port: number;
}

/**
 * The names of bench run `id` (printed at its start as `own names: database acme_bench_<id> …`): the
 * same id always gives the same names, which is how `npm run bench:resume` finds a kept run again.
 */
export function benchNames(id: string, databaseUrl: string, port: number): StackNames {
  const database = `acme_bench_${id}`;
  return {
    id,
    database,
    databaseUrl: withDatabase(databaseUrl, database),
    adminUrl: databaseUrl,
    namespace: `acme-bench-${id}`,
    exchange: `bench.${id}.events`,
    queues: Object.fromEntries(
      CONFIG_KEYS.filter((key) => key.endsWith('_QUEUE') && key !== 'TEMPORAL_TASK_QUEUE').map((key) => [
        key,
        `bench.${id}.${key.replace(/_QUEUE$/, '').toLowerCase()}`,
      ]),
    ),
    taskQueue: `bench-${id}-orders`,
    bareTaskQueue: `bench-${id}-bare`,
    port,
  };
}

/**
 * The environment of the bench's app processes: the configuration of lib/config.ts pointed at the
 * run's names, side ports of their own (`*_HTTP_PORT` 0: a free port, as the tests use; any other
 * `*_PORT` a free port picked here), so they never collide with a running `npm run up`.
 */
export async function benchAppEnv(
  names: StackNames,
  amqpUrl: string,
  logLevel: string,
): Promise<NodeJS.ProcessEnv> {
  const ports: Record<string, string> = {};
  for (const key of CONFIG_KEYS.filter((k) => k.endsWith('_PORT') && k !== 'PORT')) {
    ports[key] = key.endsWith('_HTTP_PORT') ? '0' : String(await freePort());
  }
  return {
    ...process.env,
    ...ports,
    DATABASE_URL: names.databaseUrl,
    AMQP_EXCHANGE: names.exchange,
    // Every process here logs in as the one AMQP_URL user, which is then the outbox's too.
    AMQP_TRUSTED_PUBLISHERS: amqpUser(amqpUrl),
    ...names.queues,
    TEMPORAL_TASK_QUEUE: names.taskQueue,
    TEMPORAL_NAMESPACE: names.namespace,
    PORT: String(names.port),
    LOG_LEVEL: logLevel,
    // The bench is one caller: the per-caller write limit (6000 per 10 s) would cap the API ingest
    // headroom at the limit itself, measuring it instead of the API. The limiter still runs.
    RATE_LIMIT_WRITES: '10000000',
  };
}

export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

// ------------------------------------------------------------------------------------ PostgreSQL

export async function adminQuery<R extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, application_name: 'acme-bench-admin' });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** Creates the database and applies migrations and the seed catalogue with the project's own CLI. */
export async function createBenchDatabase(names: StackNames): Promise<void> {
  await adminQuery(names.adminUrl, `create database ${names.database}`);
  dbCli(names, 'seed');
}

/** `db/cli.ts migrate` (or `seed`: migrations, then the catalogue) on the run's database. */
export function dbCli(names: StackNames, command: 'migrate' | 'seed'): void {
  const result = spawnSync(process.execPath, ['--import', 'tsx', 'db/cli.ts', command], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: names.databaseUrl },
    encoding: 'utf8',
  });
  if (result.status !== 0) {
    throw new Error(`db/cli.ts ${command} failed (exit ${result.status}):\n${result.stdout}${result.stderr}`);
  }
}

export async function dropBenchDatabase(names: StackNames): Promise<void> {
  for (let attempt = 1; attempt <= 5; attempt++) {
    try {
      await adminQuery(names.adminUrl, `drop database if exists ${names.database}`);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '55006') throw err; // in use
      await new Promise((resolve) => setTimeout(resolve, 300 * attempt));
    }
  }
  await adminQuery(names.adminUrl, `drop database if exists ${names.database} with (force)`);
}

// -------------------------------------------------------------------------------------- Temporal

export interface OwnTemporal {
  address: string;
  port: number;
  /** Stops the server; its history file goes with the bench's work folder. */
  stop(): Promise<void>;
}

/**
 * A dev server of the bench's own (`scripts/infra.sh dev-server`: the flags `npm run up` gives its
 * server, no Web UI), its history in `workDir`. Each run then starts from an empty history, so
 * figures from different days compare (the shared server's SQLite file slows as it grows), and
 * neither its load nor the deletion of its executions lands on the developer's server: deleting a
 * namespace of 20 000 runs was seen to wedge the shared dev server's SQLite for good.
 */
export async function startOwnTemporal(workDir: string, logFile: string): Promise<OwnTemporal> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const out = openSync(logFile, 'a');
  // Its own process group: Ctrl-C reaches the bench, which stops the app processes first and this
  // server last, not all of them at once.
  const server = spawn(
    'bash',
    [path.join(ROOT, 'scripts/infra.sh'), 'dev-server', String(port), path.join(workDir, 'temporal.db')],
    { cwd: ROOT, stdio: ['ignore', out, out], detached: true },
  );
  closeSync(out);
  let failed: Error | undefined;
  server.once('error', (err) => (failed = err));
  const running = () => server.exitCode === null && server.signalCode === null && !failed;
  const killOnExit = () => running() && server.kill('SIGKILL'); // the bench quitting without cleanup
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => server.once('close', () => resolve()));
  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (running()) server.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    if (running()) server.kill('SIGKILL');
  };
  for (let attempt = 0; attempt < 600; attempt++) {
    if (!running()) break;
    try {
      const connection = await Connection.connect({ address, connectTimeout: 500 });
      await connection.workflowService.getSystemInfo({});
      await connection.close();
      return { address, port, stop };
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  await stop();
  throw new Error(`the bench's own Temporal dev server did not start on ${address}: see ${logFile}`);
}

/**
 * A namespace of the bench's own, with the saga's search attributes. On a shared server
 * (`--temporal shared`) its workflows then never show among anyone else's, and deleting it at the
 * end removes them (the server deletes its executions in the background).
 */
export async function createNamespace(connection: Connection, namespace: string): Promise<void> {
  await ensureNamespace(connection, namespace, {
    description: 'npm run bench (deleted when the run ends)',
    // Longer than any run: nothing is deleted while the bench measures. With 1 hour, a 100 000-order
    // backlog's first runs came due for deletion 1 h into the drain, and the dev server's SQLite
    // store, deleting thousands of histories while serving the drain, failed every operation with
    // `interrupted (9)` half an hour later (the way a deleted bench namespace wedged the shared one).
    retention: '7 days',
  });
  await ensureSearchAttributes(connection, namespace, createLogger('bench', 'warn'));
}

export async function deleteNamespace(connection: Connection, namespace: string): Promise<void> {
  await connection.operatorService.deleteNamespace({ namespace });
}

/**
 * The pid of the official Temporal server on PostgreSQL that scripts/temporal-postgres.sh started
 * on this frontend port (it records one pid file per port), if it runs.
 */
export function postgresTemporalServerPid(port: number): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(ROOT, `.data/temporal-postgres-${port}.pid`), 'utf8'));
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

// -------------------------------------------------------------------------------------- RabbitMQ

/** Deletes the bench's queues (with their DLQs) and its exchange (with its DLX); missing ones are fine. */
export async function deleteTopology(amqpUrl: string, names: StackNames): Promise<void> {
  const connection = await amqplib.connect(amqpUrl, {
    clientProperties: { connection_name: 'acme-bench-cleanup' },
  });
  try {
    const attempt = async (op: (channel: Channel) => Promise<unknown>) => {
      const channel = await connection.createChannel();
      channel.on('error', () => {});
      await op(channel).catch(() => {});
      await channel.close().catch(() => {});
    };
    for (const queue of Object.values(names.queues).flatMap((q) => [q, `${q}.dlq`])) {
      await attempt((c) => c.deleteQueue(queue));
    }
    for (const exchange of [names.exchange, `${names.exchange}.dlx`]) {
      await attempt((c) => c.deleteExchange(exchange));
    }
  } finally {
    await connection.close().catch(() => {});
  }
}

// ------------------------------------------------------------------------------------- processes

/**
 * An app process: its name (as scripts/up.sh names it), its entry file and node's flags for it:
 * compiled JavaScript in dist/ for the app (run by `node` alone, as up.sh runs it), TypeScript (run
 * through tsx) for the bench's own bare worker.
 */
export type AppName = string;

export interface App {
  name: AppName;
  entry: string;
  nodeFlags?: string[];
  /** Variables its scripts/up.sh command sets (`env VAR=value node …`). */
  env?: Record<string, string>;
}

const nodeArgs = ({ entry, nodeFlags = [] }: App): string[] =>
  entry.endsWith('.ts') ? [...nodeFlags, '--import', 'tsx', entry] : [...nodeFlags, entry];

/** The bench's own process, not part of the system. */
export const BARE_WORKER_NAME = 'bare-worker';

/** The bare worker runs with the worker's node flags and variables: the same worker settings. */
const bareWorker = (apps: App[]): App => {
  const worker = apps.find((a) => a.name === 'worker');
  return {
    name: BARE_WORKER_NAME,
    entry: 'bench/bare-worker.ts',
    nodeFlags: worker?.nodeFlags ?? [],
    env: worker?.env ?? {},
  };
};

/**
 * The app processes `npm run up` starts, read from scripts/up.sh (its `NAMES=a,b,…` and its
 * `[env VAR=value …] node [--flag …] dist/<entry>.js` commands, in the same order), so a process
 * added there is benched too, with the same variables and flags.
 */
export function appsFromUpScript(): App[] {
  const script = readFileSync(path.join(ROOT, 'scripts/up.sh'), 'utf8');
  const names = /^NAMES=([\w,-]+)/m.exec(script)?.[1]?.split(',') ?? [];
  const commands = upScriptCommands();
  if (names.length === 0 || names.length !== commands.length) {
    throw new Error(
      `scripts/up.sh: ${names.length} NAMES but ${commands.length} \`node … dist/<entry>.js\` commands; the bench reads both`,
    );
  }
  return names.map((name, i) => {
    const { entry, nodeFlags, env } = commands[i]!;
    return { name, entry, nodeFlags, env };
  });
}

interface Running {
  child: ChildProcess;
  exited: Promise<number | null>;
  logFile: string;
}

/**
 * Starts and stops the app processes; each one's output goes to its own log file. A name can run as
 * several processes (`setReplicas`, for the scaling phases): they share the bench's names (queues,
 * task queue, database), and every replica after the first has its fixed side ports (`*_PORT`
 * besides PORT and `*_HTTP_PORT`, e.g. the SDK's metrics exporter) switched off, so they never collide.
 */
export class Processes {
  private readonly running = new Map<AppName, Running[]>();
  private readonly replicas = new Map<AppName, number>();
  /** Every log file written, newest last, so a failure can point at them. */
  readonly logFiles = new Map<AppName, string>();

  private readonly apps: Map<AppName, App>;

  constructor(
    private readonly env: NodeJS.ProcessEnv,
    private readonly logDir: string,
    apps: App[],
  ) {
    this.apps = new Map([...apps, bareWorker(apps)].map((a) => [a.name, a]));
  }

  /** How many processes `start(name)` starts from now on (1 unless set). */
  setReplicas(name: AppName, n: number): void {
    this.replicas.set(name, n);
  }

  /** The first live process of the name. */
  pid(name: AppName): number | undefined {
    return this.pids(name)[0];
  }

  /** Every live process of the name. */
  pids(name: AppName): number[] {
    return (this.running.get(name) ?? [])
      .filter((r) => r.child.exitCode === null && r.child.pid !== undefined)
      .map((r) => r.child.pid!);
  }

  isRunning(name: AppName): boolean {
    return this.pid(name) !== undefined;
  }

  start(name: AppName, extraEnv: Record<string, string> = {}): void {
    if (this.isRunning(name)) return;
    const app = this.apps.get(name);
    if (!app) throw new Error(`no app process named ${name} (scripts/up.sh names: ${[...this.apps.keys()]})`);
    const replicas = this.replicas.get(name) ?? 1;
    const started: Running[] = [];
    for (let i = 0; i < replicas; i++) {
      const label = replicas > 1 ? `${name}-${i + 1}` : name;
      const logFile = path.join(this.logDir, `${label}.log`);
      const fd = openSync(logFile, 'a');
      const sidePortsOff =
        i === 0
          ? {}
          : Object.fromEntries(
              Object.keys(this.env)
                .filter((k) => k.endsWith('_PORT') && k !== 'PORT' && !k.endsWith('_HTTP_PORT'))
                .map((k) => [k, '0']),
            );
      const child = spawn(process.execPath, nodeArgs(app), {
        cwd: ROOT,
        env: { ...this.env, ...app.env, ...sidePortsOff, ...extraEnv },
        stdio: ['ignore', fd, fd],
      });
      closeSync(fd);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      started.push({ child, exited, logFile });
      this.logFiles.set(label, logFile);
    }
    this.running.set(name, started);
  }

  /** Throws naming the process (and the end of its log) if it has exited. */
  assertAlive(names: AppName[]): void {
    for (const name of names) {
      for (const running of this.running.get(name) ?? []) {
        if (running.child.exitCode !== null) {
          throw new Error(
            `${name} exited with code ${running.child.exitCode}:\n${tail(running.logFile, 15)}`,
          );
        }
      }
    }
  }

  /** SIGTERM (the processes drain), then SIGKILL after `graceMs`. */
  async stop(name: AppName, graceMs = 15_000): Promise<void> {
    const all = this.running.get(name);
    if (!all) return;
    this.running.delete(name);
    await Promise.all(
      all.map(async (running) => {
        if (running.child.exitCode !== null || running.child.signalCode !== null) return;
        running.child.kill('SIGTERM');
        const timer = setTimeout(() => running.child.kill('SIGKILL'), graceMs);
        await running.exited;
        clearTimeout(timer);
      }),
    );
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((name) => this.stop(name)));
  }
}

export function tail(file: string, lines: number): string {
  if (!existsSync(file)) return '';
  const text = readFileSync(file, 'utf8');
  return text
    .split('\n')
    .slice(-lines - 1)
    .join('\n');
}
