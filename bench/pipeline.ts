/**
 * `npm run bench`: the order pipeline against bare Temporal baselines, on the local stack.
 *
 * One run, in this order (see `--help` for sizes):
 *  1. Bare baselines on the same dev server, through a worker built by the same createOrderWorker:
 *     the NAIVE shape (4 no-op activities, a timer started after the first and cancelled after the
 *     second; fixed for good) and a bare copy of the saga's shape; closed loop at each concurrency and
 *     open loop at the fixed rate, started directly by a client.
 *  2. The pipeline (API, outbox publisher, bridge, worker, loyalty, analytics: scripts/up.sh's processes):
 *     POST /orders closed loop at each concurrency and open loop at the rate; an order is done when
 *     its final event (order.completed, order.out_of_stock, payment.failed, order.cancelled) reaches
 *     the bench's own queue bound to the bench's exchange.
 *  3. Backlog: orders accepted with publisher, bridge and worker stopped; then started, and memory
 *     watched while the backlog drains.
 *  4. Headroom: outbox drain rate from a pre-filled outbox, the API's ingest rate (autocannon) and
 *     PostgreSQL's rate for the same placement statements (pgbench).
 * Per phase: units/s, latency percentiles, CPU-seconds per unit per process (/proc), peak RSS,
 * PostgreSQL commits per unit. Results: bench/results/<timestamp>/ (results.json, chart.svg,
 * report.txt, the ends of the process logs).
 *
 * Everything runs on names of its own (database, Temporal namespace, exchange, queues, task queues,
 * API port) and is removed at the end, so a running `npm run up` is never disturbed.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, WorkflowIdReusePolicy } from '@temporalio/client';
import { TypedSearchAttributes, defineSearchAttributeKey } from '@temporalio/common';
import amqplib from 'amqplib';
import { Command, InvalidArgumentError, Option } from 'commander';
import { loadConfig } from '../lib/config.js';
import { ensureLocalKeyPair, signLocalToken } from '../lib/auth-keys.js';
import { apiIngest, findPgbench, orderBody, outboxDrain, runPgbench } from './lib/headroom.js';
import {
  FinalEvents,
  FINAL_EVENTS,
  HttpClient,
  closedLoop,
  openLoop,
  type Progress,
  type StartUnit,
  type UnitResult,
} from './lib/load.js';
import { describeMachine } from './lib/machine.js';
import { Meter, perUnit, round, type PhaseUsage } from './lib/meter.js';
import {
  SERVER_GROUPS,
  systemGroups,
  formatReport,
  type PhaseKind,
  type PhaseResult,
  type RunResult,
  type ShapeCheck,
  type Target,
} from './lib/report.js';
import {
  Processes,
  ROOT,
  adminQuery,
  appsFromUpScript,
  BARE_WORKER_NAME,
  benchAppEnv,
  benchNames,
  createBenchDatabase,
  createNamespace,
  deleteNamespace,
  deleteTopology,
  dropBenchDatabase,
  freePort,
  postgresTemporalServerPid,
  startOwnTemporal,
  tail,
  type AppName,
} from './lib/stack.js';
import { stageBreakdown } from './lib/stages.js';
import { figures, maxOf, memoryTrend, minOf, series } from './lib/stats.js';
import { renderChart } from './lib/svg.js';
import { buildOnce } from '../test/helpers/processes.js';

// ------------------------------------------------------------------------------------------ options

const int = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number');
  return n;
};
const positive = (v: string) => {
  const n = Number(v);
  if (!(n > 0)) throw new InvalidArgumentError('expected a positive number');
  return n;
};
const list = (v: string) => {
  const values = v.split(',').map((s) => int(s.trim()));
  if (values.length === 0 || values.some((n) => n < 1)) throw new InvalidArgumentError('e.g. 16,32');
  return values;
};

/** The processes the phases stop and start by name (scripts/up.sh must start them). */
const ROLES = ['api', 'outbox', 'bridge', 'worker'];
/** The processes the scaling phases (`--scale`) run several of. */
const SCALED = ['outbox', 'bridge', 'worker'];

/** A machine busier than this between phases is doing someone else's work. */
const QUIET_CORES = 0.35;

const DEFAULTS = {
  // A multiple of every default concurrency: a closed loop then ends on a full round.
  orders: 320,
  concurrency: [16, 32],
  rate: 4,
  openSeconds: 60,
  warmup: 40,
  backlog: 300,
  outboxRows: 5000,
  headroomSeconds: 10,
  quietWait: 60,
};
const QUICK = {
  orders: 32,
  rate: 8,
  openSeconds: 4,
  warmup: 8,
  backlog: 30,
  outboxRows: 1000,
  headroomSeconds: 2,
  quietWait: 0,
};

const program = new Command('npm run bench --')
  .description(
    'The order pipeline (POST /orders → final event) against bare Temporal baselines on the local stack, with ' +
      'CPU and memory per process, backlog drain and headroom. Writes bench/results/<timestamp>/.',
  )
  .option('--orders <n>', 'orders (or bare workflows) per measured phase', int, DEFAULTS.orders)
  .option('--concurrency <list>', 'closed-loop concurrencies (orders in flight)', list, DEFAULTS.concurrency)
  .option('--rate <r>', 'open-loop arrival rate, orders/s (0: no open-loop phase)', Number, DEFAULTS.rate)
  .option(
    '--open-seconds <s>',
    'length of each open-loop phase (rate × this many orders)',
    positive,
    DEFAULTS.openSeconds,
  )
  .option(
    '--scale <list>',
    'scaling phases: the pipeline at the largest concurrency with N outbox, bridge and worker processes each (e.g. 2,4)',
    list,
    [],
  )
  .option('--warmup <n>', 'unmeasured units before the first phase of each kind', int, DEFAULTS.warmup)
  .option(
    '--backlog <n>',
    'backlog mode: orders accepted while publisher, bridge and worker are stopped, then drained (0: skip; try 20000)',
    int,
    DEFAULTS.backlog,
  )
  .option('--outbox-rows <n>', 'rows in the outbox-drain headroom test (0: skip)', int, DEFAULTS.outboxRows)
  .option(
    '--headroom-seconds <s>',
    'duration of the autocannon and pgbench runs (0: skip)',
    int,
    DEFAULTS.headroomSeconds,
  )
  .option('--ingest-connections <n>', 'autocannon connections', positive, 32)
  .option(
    '--quiet-wait <s>',
    'before each phase, wait up to this long for other work on the machine (e.g. a test suite) to stop',
    int,
    DEFAULTS.quietWait,
  )
  .option('--skip-baseline', 'skip the bare baselines')
  .option('--quick', 'a short run for checking the bench itself (a minute or two)')
  .option('--log-level <level>', 'LOG_LEVEL of the app processes (npm run up uses info)', 'info')
  .option('--order-timeout <s>', 'give up on one order (or bare workflow) after this long', positive, 120)
  .addOption(
    new Option(
      '--temporal <where>',
      'own: a throwaway dev server of the bench, started with the flags of npm run up (an empty history every run); ' +
        'shared: the server TEMPORAL_ADDRESS names, in a namespace of the bench (the default when TEMPORAL_ADDRESS is set ' +
        'or TEMPORAL_SERVER=postgres)',
    )
      .choices(['own', 'shared'])
      .default(process.env.TEMPORAL_ADDRESS || process.env.TEMPORAL_SERVER === 'postgres' ? 'shared' : 'own'),
  )
  .option(
    '--keep',
    'keep the database and queues after the run (to inspect them), and with --temporal shared the namespace',
  )
  .addHelpText(
    'after',
    '\nExamples:\n  npm run bench\n  npm run bench -- --quick\n  npm run bench -- --backlog 20000 --skip-baseline\n  npm run bench -- --skip-baseline --scale 2,4 --backlog 0\n',
  );

interface Options {
  orders: number;
  scale: number[];
  concurrency: number[];
  rate: number;
  openSeconds: number;
  warmup: number;
  backlog: number;
  outboxRows: number;
  headroomSeconds: number;
  ingestConnections: number;
  quietWait: number;
  skipBaseline?: boolean;
  quick?: boolean;
  logLevel: string;
  orderTimeout: number;
  temporal: 'own' | 'shared';
  keep?: boolean;
}

function parseOptions(): Options {
  program.parse();
  const opts = program.opts<Options>();
  if (opts.quick) {
    for (const [key, value] of Object.entries(QUICK)) {
      const name = key as keyof typeof QUICK;
      if (program.getOptionValueSource(name) === 'default') opts[name] = value;
    }
  }
  return opts;
}

// ------------------------------------------------------------------------------------------ helpers

const t0 = performance.now();
const now = () => performance.now() - t0;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (line: string) => process.stdout.write(`${line}\n`);
/** The bench's clock (ms since its start) as epoch milliseconds, to compare with database times. */
const epochOf = (ms: number) => performance.timeOrigin + t0 + ms;
const elapsed = () => `[${(now() / 1000).toFixed(0).padStart(4)} s]`;

/** Stops the run: Ctrl-C, or an app process that died. Loops check it; waiting units give up. */
class Abort {
  reason: Error | undefined;
  private listeners: Array<() => void> = [];
  trigger(reason: Error): void {
    if (this.reason) return;
    this.reason = reason;
    for (const l of this.listeners) l();
  }
  aborted = () => this.reason !== undefined;
  /** Resolves when the run is stopped. */
  readonly signal = new Promise<void>((resolve) => this.listeners.push(resolve));
  throwIfAborted(): void {
    if (this.reason) throw this.reason;
  }
}

function progressLine(label: string, total: number): Progress {
  const started = now();
  let last = 0;
  const tty = process.stdout.isTTY;
  const render = (done: number, records: UnitResult[], final: boolean) => {
    const elapsed = (now() - started) / 1000;
    const recent = records
      .filter((r) => r.outcome !== 'aborted')
      .slice(-200)
      .map((r) => r.doneAt - r.sentAt);
    recent.sort((a, b) => a - b);
    const p50 = recent.length ? recent[Math.floor(recent.length / 2)]! : 0;
    const line = `  ${label}: ${done}/${total} · ${(done / Math.max(elapsed, 0.001)).toFixed(1)}/s · p50 ${p50.toFixed(0)} ms (last 200)`;
    if (tty) process.stdout.write(`\r${line.padEnd(100)}${final ? '\n' : ''}`);
    else if (final || now() - last > 5000) {
      last = now();
      log(line);
    }
  };
  return {
    update(done, records) {
      if (tty ? now() - last > 250 : true) {
        if (tty) last = now();
        render(done, records, false);
      }
    },
    finish(records, done = records.length) {
      render(done, records, true);
    },
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, abort: Abort): Promise<T | 'timeout' | 'aborted'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms))),
    abort.signal.then(() => 'aborted' as const),
  ]).finally(() => clearTimeout(timer));
}

// --------------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  const opts = parseOptions();
  const config = loadConfig();
  // One operator token places every bench order (for many customers), signed with the local key
  // the bench's API verifies against; the per-caller rate limit's default lets this load through.
  if (config.AUTH_JWKS_URL !== undefined) {
    throw new Error('the bench signs its own token with the local key pair: unset AUTH_JWKS_URL to run it');
  }
  const authorization = `Bearer ${await signLocalToken(
    await ensureLocalKeyPair(path.resolve(ROOT, config.AUTH_LOCAL_KEY_DIR)),
    config,
    { subject: 'bench', role: 'operator' },
  )}`;
  const abort = new Abort();
  // Ctrl-C reaches this process twice (from the terminal and relayed by tsx): a second signal within
  // a second is the same stop; a later one quits at once, without cleaning up.
  let firstSignalAt: number | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt === undefined) {
      firstSignalAt = Date.now();
      log(`\n${signal}: stopping and cleaning up (Ctrl-C again to quit at once, leaving things behind)`);
      abort.trigger(new Error(`interrupted (${signal})`));
    } else if (Date.now() - firstSignalAt > 1000) {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const stamp = new Date().toISOString().replace(/\..*$/, '').replaceAll(':', '-');
  const resultsDir = path.join(ROOT, 'bench/results', stamp);
  mkdirSync(resultsDir, { recursive: true });
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'acme-bench-'));
  const temporalLog = path.join(workDir, 'temporal.log');
  const id = randomUUID().replaceAll('-', '').slice(0, 8);
  const names = benchNames(id, config.DATABASE_URL, await freePort());
  const { database } = names;
  const apps = appsFromUpScript();
  buildOnce(); // the app processes run from dist/, as `npm run up` runs them
  for (const role of ROLES) {
    if (!apps.some((a) => a.name === role)) throw new Error(`scripts/up.sh starts no process named ${role}`);
  }
  const appEnv = await benchAppEnv(names, config.AMQP_URL, opts.logLevel);

  const source = describeSource();
  const machineBase = describeMachine();
  log(
    `bench ${stamp} on ${machineBase.cpuModel} · ${machineBase.cores} cores · ${machineBase.ramGb} GB RAM · ${machineBase.os} · node ${machineBase.node}`,
  );
  log(
    `options: ${opts.orders} per closed-loop phase, concurrency ${opts.concurrency.join(',')}, open loop ${opts.rate}/s for ${opts.openSeconds} s, warm-up ${opts.warmup}, backlog ${opts.backlog}, outbox rows ${opts.outboxRows}, headroom ${opts.headroomSeconds} s${opts.skipBaseline ? ', no baseline' : ''}${opts.quick ? ' (quick)' : ''}`,
  );
  log(`app code: ${source}`);
  log(
    `own names: database ${database}, namespace ${names.namespace}, exchange ${names.exchange}, API port ${names.port}`,
  );

  const cleanups: Array<[string, () => Promise<unknown>]> = [];
  const processes = new Processes(appEnv, workDir, apps);
  const run: RunResult = {
    startedAt: new Date().toISOString(),
    resultsDir: path.relative(ROOT, resultsDir),
    machine: { ...machineBase, servers: {} },
    options: { ...opts },
    apps: apps.map((a) => a.name),
    source,
    processes: {},
    phases: [],
    headroom: {},
    ratios: [],
    targets: [],
    peakMemoryMb: {},
    notes: [],
  };

  let failure: unknown;
  let meterRef: Meter | undefined;
  try {
    // ---------------------------------------------------------------------------------- setup
    let temporalAddress = config.TEMPORAL_ADDRESS;
    if (opts.temporal === 'own') {
      log("starting the bench's own Temporal dev server");
      const own = await startOwnTemporal(workDir, temporalLog);
      cleanups.push(['own Temporal dev server', () => own.stop()]);
      temporalAddress = appEnv.TEMPORAL_ADDRESS = own.address;
    }
    const connection = await Connection.connect({ address: temporalAddress }).catch((err: unknown) => {
      throw new Error(
        `cannot reach Temporal at ${temporalAddress} (${String(err)}): start the servers with npm run infra`,
        { cause: err },
      );
    });
    cleanups.push(['Temporal connection', () => connection.close()]);
    run.machine.servers = await serverVersions(
      config.DATABASE_URL,
      config.AMQP_URL,
      connection,
      temporalAddress,
      opts.temporal,
    );
    log(
      `servers: ${Object.entries(run.machine.servers)
        .map(([k, v]) => `${k} ${v}`)
        .join(' · ')}`,
    );

    await createNamespace(connection, names.namespace);
    // The own server goes with all its history; a shared one deletes the namespace's executions.
    if (opts.temporal === 'shared' && !opts.keep) {
      cleanups.push(['namespace', () => deleteNamespace(connection, names.namespace)]);
    }
    const client = new Client({ connection, namespace: names.namespace });

    cleanups.push(['database', () => (opts.keep ? Promise.resolve() : dropBenchDatabase(names))]);
    await createBenchDatabase(names);
    // Enough stock for every order of the run, written straight into the bench's database.
    await adminQuery(names.databaseUrl, 'update products set stock_qty = 100000000');
    cleanups.push([
      'RabbitMQ names',
      () => (opts.keep ? Promise.resolve() : deleteTopology(config.AMQP_URL, names)),
    ]);

    const finals = new FinalEvents(now);
    await finals.connect(config.AMQP_URL, names.exchange);
    cleanups.push(['subscriber', () => finals.close()]);

    const temporalPort = Number(/:(\d+)$/.exec(temporalAddress)?.[1]) || undefined;
    const meter = new Meter({
      processes,
      apps: [...apps.map((a) => a.name), BARE_WORKER_NAME],
      adminUrl: names.adminUrl,
      database,
      temporalPort,
      t0,
    });
    await meter.init();
    meter.startSampling(500);
    meterRef = meter;
    cleanups.push(['meter', () => meter.close()]);
    cleanups.push(['app processes', () => processes.stopAll()]);
    run.processes = { ...meter.found };
    log(
      `measuring: ${Object.entries(meter.found)
        .map(([k, v]) => `${k} ${v}`)
        .join(' · ')}`,
    );

    // A process that dies stops the run, naming it.
    let expected: AppName[] = [];
    const watchdog = setInterval(() => {
      try {
        processes.assertAlive(expected);
      } catch (err) {
        abort.trigger(err as Error);
      }
    }, 500);
    cleanups.push(['watchdog', async () => clearInterval(watchdog)]);

    /** Measures one phase: CPU and commits from begin to end (after a second's settling), peaks. */
    const measure = async <T>(
      body: () => Promise<T>,
    ): Promise<{ value: T; usage: PhaseUsage; start: number; end: number }> => {
      abort.throwIfAborted();
      let waited = 0;
      const idle = await meter.waitForQuiet(opts.quietWait, QUIET_CORES, (cores) => {
        if (waited++ % 10 === 0)
          log(`  waiting for the machine to be quiet: ${cores} cores busy (other work)`);
      });
      if (idle >= QUIET_CORES) log(`  going on after ${opts.quietWait} s with ${idle} cores busy elsewhere`);
      abort.throwIfAborted();
      await meter.begin();
      const start = now() / 1000;
      const value = await body();
      const end = now() / 1000;
      abort.throwIfAborted();
      await sleep(1200); // PostgreSQL backends publish their statistics at most once a second
      const usage = await meter.end();
      return { value, usage, start, end };
    };

    const loadPhase = async (
      name: string,
      kind: PhaseKind,
      mode: 'closed' | 'open',
      param: number,
      startUnit: StartUnit,
      ok: (outcome: string) => boolean,
    ): Promise<PhaseResult> => {
      const units = mode === 'closed' ? opts.orders : Math.max(1, Math.round(param * opts.openSeconds));
      const progress = progressLine(name, units);
      const {
        value: records,
        usage,
        start,
        end,
      } = await measure(() =>
        mode === 'closed'
          ? closedLoop(units, param, startUnit, now, progress, abort)
          : openLoop(units, param, startUnit, now, progress, abort),
      );
      const f = figures(records, ok);
      const phase: PhaseResult = {
        name,
        kind,
        mode,
        ...(mode === 'closed' ? { concurrency: param } : { rate: param }),
        start,
        end,
        figures: f,
        usage,
        cpuMsPerUnit: perUnit(usage, f.completed),
        commitsPerUnit: f.completed ? round(usage.pgCommits / f.completed, 2) : undefined,
        series: series(records, ok),
      };
      if (kind === 'pipeline') {
        phase.stages = await stageBreakdown(names.databaseUrl, records, epochOf);
      }
      run.phases.push(phase);
      log(
        `  ${elapsed()} ${name}: ${f.completed}/${f.units} in ${f.seconds} s = ${f.perSecond}/s · p50 ${f.latencyMs.p50} ms · p95 ${f.latencyMs.p95} ms · p99 ${f.latencyMs.p99} ms · ${Object.entries(
          f.outcomes,
        )
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
      );
      return phase;
    };

    /** Unmeasured units before the first phase of a kind; stops at the first failure. */
    const warmUp = async (
      label: string,
      unit: StartUnit,
      ok: (outcome: string) => boolean,
      failure: () => string,
    ): Promise<void> => {
      const n = Math.max(1, opts.warmup);
      let failed: string | undefined;
      const records = await closedLoop(
        n,
        Math.min(8, opts.concurrency[0]!),
        async (i, at) => {
          const r = await unit(i, at);
          if (!ok(r.outcome)) failed ??= r.outcome;
          return r;
        },
        now,
        progressLine(label, n),
        { aborted: () => abort.aborted() || failed !== undefined },
      );
      abort.throwIfAborted();
      if (failed)
        throw new Error(`${failure()}: ${records.filter((r) => !ok(r.outcome)).length} failed (${failed})`);
    };

    const timeoutMs = opts.orderTimeout * 1000;
    const deadlineMs = config.PAYMENT_DEADLINE_MS;

    // ------------------------------------------------------------------------ bare baselines
    let bareShapeId: string | undefined;
    if (!opts.skipBaseline) {
      log('\n[1/4] bare baselines (no-op activities, started directly by a client)');
      processes.start(BARE_WORKER_NAME, { TEMPORAL_TASK_QUEUE: names.bareTaskQueue });
      expected = [BARE_WORKER_NAME];
      let seq = 0;
      const bareUnit =
        (shape: 'naive' | 'shape'): StartUnit =>
        async (_i, scheduledAt) => {
          const n = seq++;
          const orderId = randomUUID();
          const handle =
            shape === 'naive'
              ? client.workflow.execute('naiveBare', {
                  taskQueue: names.bareTaskQueue,
                  workflowId: `naive-${n}`,
                  args: [n],
                })
              : client.workflow.execute('sagaShapeBare', {
                  taskQueue: names.bareTaskQueue,
                  workflowId: `order-bare-${orderId}`,
                  args: [
                    {
                      orderId,
                      customerId: 'BENCH',
                      correlationId: orderId,
                      paymentDeadlineMs: deadlineMs,
                      run: 1,
                    },
                  ],
                  // As the bridge starts a saga's first run (lib/temporal.ts startOrderSaga).
                  workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
                  workflowIdConflictPolicy: 'FAIL',
                  typedSearchAttributes: new TypedSearchAttributes([
                    { key: SA.OrderId, value: orderId },
                    { key: SA.CustomerId, value: 'BENCH' },
                    { key: SA.OrderStatus, value: 'PENDING' },
                  ]),
                  memo: { correlationId: orderId, run: 1 },
                });
          if (shape === 'shape') bareShapeId ??= `order-bare-${orderId}`;
          const result = await withTimeout(
            handle.then(
              () => 'completed',
              (err: unknown) => `failed: ${err instanceof Error ? err.message : String(err)}`.slice(0, 80),
            ),
            timeoutMs,
            abort,
          );
          return { sentAt: scheduledAt, doneAt: now(), outcome: result };
        };
      const bareOk = (o: string) => o === 'completed';

      // Warm-up: the worker bundles its workflows at start, and the first runs are slow (JIT).
      const warm = (shape: 'naive' | 'shape') =>
        warmUp(`warm-up ${shape} bare`, bareUnit(shape), bareOk, () => 'bare warm-up failed');
      await warm('naive');
      await warm('shape');
      for (const c of opts.concurrency) {
        await loadPhase(`naive bare c=${c}`, 'naive', 'closed', c, bareUnit('naive'), bareOk);
        await loadPhase(`shape bare c=${c}`, 'shape', 'closed', c, bareUnit('shape'), bareOk);
      }
      if (opts.rate > 0) {
        await loadPhase(`naive bare ${opts.rate}/s`, 'naive', 'open', opts.rate, bareUnit('naive'), bareOk);
        await loadPhase(`shape bare ${opts.rate}/s`, 'shape', 'open', opts.rate, bareUnit('shape'), bareOk);
      }
      expected = [];
      await processes.stop(BARE_WORKER_NAME);
    }

    // ------------------------------------------------------------------------------ pipeline
    log('\n[2/4] pipeline (POST /orders → final event seen by a subscriber of the bench exchange)');
    const PIPELINE: AppName[] = apps.map((a) => a.name);
    for (const name of PIPELINE) processes.start(name);
    expected = [...PIPELINE];
    const http = new HttpClient(names.port, Math.max(...opts.concurrency, 64), authorization);
    cleanups.push(['http', async () => http.close()]);
    await waitForApi(http, abort);

    let orderSeq = 0;
    let firstHttpError: string | undefined;
    const postOnly = async (): Promise<{
      id?: string;
      status: number;
      sentAt: number;
      acceptedAt: number;
    }> => {
      const sentAt = now();
      const seq = orderSeq++;
      // As a client does: a request whose connection broke (a keep-alive socket the server closed
      // just then) is sent once more with the same Idempotency-Key, which can never make two orders.
      const post = () =>
        http.request('POST', '/orders', orderBody(seq), { 'idempotency-key': `bench-${names.id}-${seq}` });
      try {
        const res = await post().catch(post);
        const acceptedAt = now();
        if (res.status !== 202 && res.status !== 200) {
          firstHttpError ??= `${res.status} ${res.body.slice(0, 300)}`;
          return { status: res.status, sentAt, acceptedAt };
        }
        return { id: (JSON.parse(res.body) as { id: string }).id, status: res.status, sentAt, acceptedAt };
      } catch (err) {
        firstHttpError ??= `no answer: ${err instanceof Error ? err.message : String(err)}`;
        return { status: 0, sentAt, acceptedAt: now() };
      }
    };
    const pipelineIds: string[] = [];
    const orderUnit: StartUnit = async (_i, scheduledAt) => {
      const posted = await postOnly();
      const acceptMs = posted.acceptedAt - posted.sentAt;
      if (!posted.id) {
        return { sentAt: scheduledAt, doneAt: posted.acceptedAt, outcome: `http-${posted.status}`, acceptMs };
      }
      pipelineIds.push(posted.id);
      const order = { acceptMs, id: posted.id, postedAt: posted.sentAt };
      const final = await withTimeout(finals.wait(posted.id, timeoutMs), timeoutMs, abort);
      if (final === 'timeout' || final === 'aborted' || final === undefined) {
        return { sentAt: scheduledAt, doneAt: now(), outcome: final ?? 'timeout', ...order };
      }
      return { sentAt: scheduledAt, doneAt: final.at, outcome: final.type, ...order };
    };
    const orderOk = (o: string) => FINAL_EVENTS.includes(o);

    await warmUp(
      'warm-up pipeline',
      orderUnit,
      orderOk,
      () => `pipeline warm-up failed (first HTTP error: ${firstHttpError ?? 'none'}; see the process logs)`,
    );
    for (const c of opts.concurrency) {
      await loadPhase(`pipeline c=${c}`, 'pipeline', 'closed', c, orderUnit, orderOk);
    }
    if (opts.rate > 0) {
      await loadPhase(`pipeline ${opts.rate}/s`, 'pipeline', 'open', opts.rate, orderUnit, orderOk);
    }
    run.eventsPerOrder = await eventsPerOrder(names.databaseUrl);
    if (firstHttpError) log(`  first POST /orders that failed: ${firstHttpError}`);

    if (bareShapeId && pipelineIds[0]) {
      run.shapeCheck = await compareShapes(client, `order-${pipelineIds[0]}`, bareShapeId);
      if (!run.shapeCheck.matches)
        log('  WARNING: the bare saga-shape copy no longer matches the saga (see report)');
    }

    // ------------------------------------------------------------------------------- scaling
    const scales = opts.scale.filter((n) => n > 1);
    if (scales.length > 0) {
      const c = Math.max(...opts.concurrency);
      log(`\n[2b/4] scaling: ${SCALED.join(', ')} as ${scales.join(', ')} processes each, c=${c}`);
      for (const n of scales) {
        for (const name of SCALED) await processes.stop(name);
        for (const name of SCALED) {
          processes.setReplicas(name, n);
          processes.start(name);
        }
        // N processes start at once (each worker bundles its workflows): a slow first order is
        // reported, not fatal, so the measured phase still runs.
        await warmUp(`warm-up ×${n}`, orderUnit, orderOk, () => `pipeline ×${n} warm-up failed`).catch(
          (err: unknown) => log(`  WARNING: ${err instanceof Error ? err.message : String(err)}`),
        );
        await loadPhase(`pipeline c=${c} ×${n}`, 'pipeline', 'closed', c, orderUnit, orderOk);
      }
      for (const name of SCALED) {
        await processes.stop(name);
        processes.setReplicas(name, 1);
        processes.start(name);
      }
    }

    // ------------------------------------------------------------------------------- backlog
    if (opts.backlog > 0) {
      log(
        `\n[3/4] backlog: ${opts.backlog} orders accepted with publisher, bridge and worker stopped, then drained`,
      );
      const stopped = ['outbox', 'bridge', 'worker'];
      expected = PIPELINE.filter((name) => !stopped.includes(name));
      for (const name of stopped) await processes.stop(name);
      const accepted: Array<{ id: string; sentAt: number; acceptedAt: number }> = [];
      const acceptProgress = progressLine('accepting', opts.backlog);
      const acceptPhase = await measure(() =>
        closedLoop(
          opts.backlog,
          32,
          async () => {
            const posted = await postOnly();
            if (posted.id)
              accepted.push({ id: posted.id, sentAt: posted.sentAt, acceptedAt: posted.acceptedAt });
            return {
              sentAt: posted.sentAt,
              doneAt: posted.acceptedAt,
              outcome: posted.id ? 'accepted' : `http-${posted.status}`,
            };
          },
          now,
          acceptProgress,
          abort,
        ),
      );
      const acceptFigures = figures(acceptPhase.value, (o) => o === 'accepted');
      run.phases.push({
        name: 'backlog accept',
        kind: 'backlog-accept',
        mode: 'closed',
        concurrency: 32,
        start: acceptPhase.start,
        end: acceptPhase.end,
        figures: acceptFigures,
        usage: acceptPhase.usage,
        cpuMsPerUnit: perUnit(acceptPhase.usage, acceptFigures.completed),
        commitsPerUnit: round(acceptPhase.usage.pgCommits / Math.max(1, acceptFigures.completed), 2),
        series: series(acceptPhase.value, (o) => o === 'accepted'),
      });

      const drainTimeout = Math.max(timeoutMs, opts.backlog * 500);
      const drainProgress = progressLine('draining', accepted.length);
      let drainStartedAt = 0;
      const drain = await measure(async () => {
        drainStartedAt = now();
        for (const name of stopped) processes.start(name);
        expected = [...PIPELINE];
        const records: UnitResult[] = [];
        let settled = 0;
        await Promise.all(
          accepted.map(async (order) => {
            const final = await withTimeout(finals.wait(order.id, drainTimeout), drainTimeout, abort);
            records.push(
              final === 'timeout' || final === 'aborted' || final === undefined
                ? { sentAt: order.sentAt, doneAt: now(), outcome: final ?? 'timeout' }
                : { sentAt: order.sentAt, doneAt: final.at, outcome: final.type },
            );
            // An order given up on because the bench is stopping is not progress: the last line printed
            // then says how far the drain really got.
            if (final !== 'aborted') drainProgress.update(++settled, records);
          }),
        );
        drainProgress.finish(records, settled);
        return records;
      });
      const done = drain.value.filter((r) => orderOk(r.outcome));
      const drainFigures = figures(drain.value, orderOk);
      const firstDone = minOf(done.map((r) => r.doneAt));
      const lastDone = maxOf(done.map((r) => r.doneAt));
      run.phases.push({
        name: 'backlog drain',
        kind: 'backlog-drain',
        start: drain.start,
        end: drain.end,
        figures: { ...drainFigures, seconds: round((lastDone - drainStartedAt) / 1000, 2) },
        usage: drain.usage,
        cpuMsPerUnit: perUnit(drain.usage, done.length),
        commitsPerUnit: round(drain.usage.pgCommits / Math.max(1, done.length), 2),
        series: series(drain.value, orderOk),
      });
      run.backlog = {
        orders: accepted.length,
        acceptPerSecond: acceptFigures.perSecond,
        drainSeconds: round((lastDone - drainStartedAt) / 1000, 2),
        drainPerSecond: round(done.length / ((lastDone - drainStartedAt) / 1000), 1),
        steadyPerSecond: round(done.length / Math.max(0.001, (lastDone - firstDone) / 1000), 1),
        completed: done.length,
        outcomes: drainFigures.outcomes,
        ...memoryTrend(meter.memory, systemGroups(run.apps), run.apps, firstDone / 1000, lastDone / 1000),
      };
      log(
        `  backlog: accepted at ${run.backlog.acceptPerSecond}/s; drained ${done.length} in ${run.backlog.drainSeconds} s = ${run.backlog.drainPerSecond}/s (${run.backlog.steadyPerSecond}/s after start-up); the app's memory ${run.backlog.flat ? 'flat' : 'GROWING'}`,
      );
    }

    // ------------------------------------------------------------------------------ headroom
    log('\n[4/4] headroom: outbox drain, API ingest, PostgreSQL alone');
    if (opts.outboxRows > 0) {
      expected = ['outbox'];
      for (const name of PIPELINE.filter((n) => n !== 'outbox')) await processes.stop(name);
      if (!processes.isRunning('outbox')) processes.start('outbox');
      await waitForOutboxEmpty(names.databaseUrl, abort);
      const tty = process.stdout.isTTY;
      let lastPrint = 0;
      const {
        value: drained,
        usage,
        start,
        end,
      } = await measure(() =>
        outboxDrain(names.databaseUrl, opts.outboxRows, (published) => {
          if (tty) process.stdout.write(`\r  outbox drain: ${published}/${opts.outboxRows}`.padEnd(60));
          else if (now() - lastPrint > 5000) {
            lastPrint = now();
            log(`  outbox drain: ${published}/${opts.outboxRows}`);
          }
        }),
      );
      if (tty) process.stdout.write('\n');
      run.headroom.outbox = { ...drained, cpuMsPerRow: perUnit(usage, drained.rows) };
      run.phases.push({ name: 'outbox drain', kind: 'headroom', start, end, usage, series: [] });
      log(`  outbox drain: ${drained.rows} rows in ${drained.seconds} s = ${drained.perSecond} rows/s`);
      // The fake order.placed must never start a saga.
      await purgeQueue(config.AMQP_URL, names.queues.BRIDGE_QUEUE ?? config.BRIDGE_QUEUE);
    }
    if (opts.headroomSeconds > 0) {
      expected = ['api'];
      for (const name of PIPELINE.filter((n) => n !== 'api')) await processes.stop(name);
      processes.start('api');
      await waitForApi(http, abort);
      const ingest = await measure(() =>
        apiIngest(names.port, names.databaseUrl, opts.headroomSeconds, opts.ingestConnections, authorization),
      );
      run.headroom.ingest = ingest.value;
      run.phases.push({
        name: 'API ingest (autocannon)',
        kind: 'headroom',
        start: ingest.start,
        end: ingest.end,
        usage: ingest.usage,
        series: [],
      });
      log(
        `  API ingest: ${ingest.value.perSecond} orders/s (${ingest.value.accepted} accepted, ${ingest.value.non2xx} non-2xx, ${ingest.value.errors} errors)`,
      );
      expected = [];
      await processes.stop('api');

      const pgbench = findPgbench();
      if (!pgbench) run.notes.push('pgbench not found: install the postgresql package (Debian)');
      else {
        const pgb = await measure(() =>
          runPgbench(pgbench, names.databaseUrl, workDir, opts.headroomSeconds, config.DATABASE_POOL_MAX),
        );
        run.headroom.pgbench = pgb.value;
        run.phases.push({
          name: 'pgbench (order placement)',
          kind: 'headroom',
          start: pgb.start,
          end: pgb.end,
          usage: pgb.usage,
          series: [],
        });
        log(`  pgbench: ${pgb.value.perSecond} orders/s (${pgb.value.clients} clients)`);
      }
    }
    expected = [];
  } catch (err) {
    failure = err;
  } finally {
    for (const [name, cleanup] of cleanups.reverse()) {
      await cleanup().catch((err: unknown) => log(`cleanup of ${name} failed: ${String(err)}`));
    }
  }

  // The end of each process log, for the record (the logs themselves live in a temporary folder).
  mkdirSync(path.join(resultsDir, 'logs'), { recursive: true });
  for (const [name, file] of processes.logFiles) {
    writeFileSync(path.join(resultsDir, 'logs', `${name}.tail.log`), tail(file, 200));
  }
  if (existsSync(temporalLog)) {
    writeFileSync(path.join(resultsDir, 'logs', 'temporal.tail.log'), tail(temporalLog, 200));
  }
  rmSync(workDir, { recursive: true, force: true });

  if (run.phases.length > 0) {
    summarize(run, opts);
    run.memorySeries = (meterRef?.memory ?? []).filter((_, i) => i % 2 === 0);
    const report = formatReport(run);
    writeFileSync(path.join(resultsDir, 'results.json'), `${JSON.stringify(run, null, 2)}\n`);
    writeFileSync(path.join(resultsDir, 'report.txt'), `${report}\n`);
    writeFileSync(
      path.join(resultsDir, 'chart.svg'),
      renderChart(
        `npm run bench ${run.startedAt} · ${run.machine.cores} cores · ${run.machine.cpuModel}`,
        // Accepted POSTs are not completions: the backlog's accept phase is shown as a band only.
        run.phases.map((p) => ({
          label: p.name,
          start: p.start,
          end: p.end,
          series: p.kind === 'backlog-accept' ? [] : p.series,
        })),
        meterRef?.memory ?? [],
      ),
    );
    log(`\n${report}`);
  }
  log(`\nresults: ${path.relative(process.cwd(), resultsDir)}/ (results.json, report.txt, chart.svg, logs/)`);
  if (failure) {
    log(`\nbench FAILED: ${failure instanceof Error ? failure.message : String(failure)}`);
    process.exitCode = 1;
  }
}

const SA = {
  OrderId: defineSearchAttributeKey('OrderId', 'KEYWORD'),
  CustomerId: defineSearchAttributeKey('CustomerId', 'KEYWORD'),
  OrderStatus: defineSearchAttributeKey('OrderStatus', 'KEYWORD'),
};

/** Which app code ran: the commit, and whether the app's folders had uncommitted changes. */
function describeSource(): string {
  const git = (...args: string[]) => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' });
  const head = git('rev-parse', '--short', 'HEAD');
  if (head.status !== 0) return 'not a git checkout';
  const dirty = git('status', '--porcelain', '--', ...APP_FOLDERS)
    .stdout.split('\n')
    .filter(Boolean).length;
  return `${head.stdout.trim()}${dirty ? ` + ${dirty} uncommitted changes in ${APP_FOLDERS.join(', ')}` : ' (clean)'}`;
}

const APP_FOLDERS = ['activities', 'api', 'db', 'domain', 'lib', 'subscribers', 'workers', 'workflows'];

async function waitForApi(http: HttpClient, abort: Abort): Promise<void> {
  for (let i = 0; i < 600; i++) {
    abort.throwIfAborted();
    try {
      if ((await http.request('GET', '/health')).status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error('the API did not answer /health within 60 s');
}

async function waitForOutboxEmpty(databaseUrl: string, abort: Abort): Promise<void> {
  for (let i = 0; i < 1200; i++) {
    abort.throwIfAborted();
    const rows = await adminQuery<{ n: string }>(
      databaseUrl,
      "select count(*) as n from event_outbox where status = 'PENDING'",
    );
    if (Number(rows[0]!.n) === 0) return;
    await sleep(250);
  }
  throw new Error('the outbox did not empty within 5 minutes');
}

async function purgeQueue(amqpUrl: string, queue: string): Promise<void> {
  const connection = await amqplib.connect(amqpUrl);
  try {
    const channel = await connection.createChannel();
    await channel.purgeQueue(queue);
  } finally {
    await connection.close().catch(() => {});
  }
}

async function eventsPerOrder(databaseUrl: string): Promise<Record<string, number>> {
  const rows = await adminQuery<{ type: string; n: string; orders: string }>(
    databaseUrl,
    `select type, count(*) as n, (select count(*) from orders) as orders from event_outbox group by type order by type`,
  );
  const orders = Number(rows[0]?.orders ?? 0);
  const out: Record<string, number> = {};
  let total = 0;
  for (const r of rows) {
    out[r.type] = round(Number(r.n) / Math.max(1, orders), 2);
    total += Number(r.n);
  }
  out.total = round(total / Math.max(1, orders), 2);
  return out;
}

async function serverVersions(
  databaseUrl: string,
  amqpUrl: string,
  connection: Connection,
  temporalAddress: string,
  temporal: Options['temporal'],
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  try {
    const rows = await adminQuery<{ v: string }>(
      databaseUrl,
      "select current_setting('server_version') as v",
    );
    out.PostgreSQL = rows[0]!.v;
  } catch (err) {
    throw new Error(`cannot reach PostgreSQL (${String(err)}): start the servers with npm run infra`, {
      cause: err,
    });
  }
  try {
    const c = await amqplib.connect(amqpUrl);
    out.RabbitMQ = String(c.connection.serverProperties.version ?? '?');
    await c.close();
  } catch (err) {
    throw new Error(`cannot reach RabbitMQ (${String(err)}): start the servers with npm run infra`, {
      cause: err,
    });
  }
  try {
    const info = await connection.workflowService.getSystemInfo({});
    const port = Number(/:(\d+)$/.exec(temporalAddress)?.[1]);
    const kind = postgresTemporalServerPid(port) ? 'on PostgreSQL' : 'dev server';
    out.Temporal = `${info.serverVersion || '?'} (${temporal === 'own' ? "the bench's own dev server" : kind})`;
  } catch {
    out.Temporal = '?';
  }
  return out;
}

/** The history of a run as the sequence of non-workflow-task events (activity types named). */
async function historyShape(
  client: Client,
  workflowId: string,
): Promise<{ events: string[]; tasks: number }> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const events: string[] = [];
  let tasks = 0;
  for (const event of history.events ?? []) {
    const kind = Object.keys(event).find(
      (k) => k.endsWith('EventAttributes') && (event as Record<string, unknown>)[k] != null,
    );
    if (!kind) continue;
    const name = kind.replace(/EventAttributes$/, '');
    if (name === 'workflowTaskCompleted') tasks += 1;
    if (name.startsWith('workflowTask')) continue;
    const activity = event.activityTaskScheduledEventAttributes?.activityType?.name;
    events.push(activity ? `${name}(${activity})` : name);
  }
  return { events, tasks };
}

async function compareShapes(client: Client, sagaId: string, bareId: string): Promise<ShapeCheck> {
  const saga = await historyShape(client, sagaId);
  const bare = await historyShape(client, bareId);
  return {
    matches: saga.events.join() === bare.events.join() && saga.tasks === bare.tasks,
    saga: saga.events,
    bare: bare.events,
    sagaWorkflowTasks: saga.tasks,
    bareWorkflowTasks: bare.tasks,
  };
}

function summarize(run: RunResult, opts: Options): void {
  const byName = new Map(run.phases.map((p) => [p.name, p]));
  const rate = (name: string) => byName.get(name)?.figures?.perSecond;
  const p50 = (name: string) => byName.get(name)?.figures?.latencyMs.p50;
  const ratio = (a: number | undefined, b: number | undefined) =>
    a !== undefined && b !== undefined && b > 0 ? round(a / b, 2) : null;

  for (const c of opts.concurrency) {
    const pipe = `pipeline c=${c}`;
    run.ratios.push({
      at: `c=${c}`,
      'pipeline/s': rate(pipe) ?? null,
      'naive/s': rate(`naive bare c=${c}`) ?? null,
      'shape/s': rate(`shape bare c=${c}`) ?? null,
      '÷naive': ratio(rate(pipe), rate(`naive bare c=${c}`)),
      '÷shape': ratio(rate(pipe), rate(`shape bare c=${c}`)),
      'p50 ms': p50(pipe) ?? null,
      'p50 ÷naive': ratio(p50(pipe), p50(`naive bare c=${c}`)),
      'p50 ÷shape': ratio(p50(pipe), p50(`shape bare c=${c}`)),
    });
  }
  if (opts.rate > 0) {
    const pipe = `pipeline ${opts.rate}/s`;
    run.ratios.push({
      at: `${opts.rate}/s open loop`,
      'pipeline/s': rate(pipe) ?? null,
      'p50 ms': p50(pipe) ?? null,
      'naive p50': p50(`naive bare ${opts.rate}/s`) ?? null,
      'shape p50': p50(`shape bare ${opts.rate}/s`) ?? null,
      'p50 ÷naive': ratio(p50(pipe), p50(`naive bare ${opts.rate}/s`)),
      'p50 ÷shape': ratio(p50(pipe), p50(`shape bare ${opts.rate}/s`)),
    });
  }

  // Peak memory per process over every phase.
  for (const p of run.phases) {
    for (const [name, g] of Object.entries(p.usage.groups)) {
      if (name === 'postgres: bench db backends') continue;
      const cur = run.peakMemoryMb[name] ?? { sampled: 0, hwm: 0 };
      run.peakMemoryMb[name] = {
        sampled: Math.max(cur.sampled, g.peakRssMb),
        hwm: Math.max(cur.hwm, g.hwmMb),
      };
    }
  }

  const t: Target[] = run.targets;
  const baseline = !opts.skipBaseline;
  for (const c of opts.concurrency.filter((c) => c === 16 || c === 32)) {
    const r = ratio(rate(`pipeline c=${c}`), rate(`naive bare c=${c}`));
    t.push({
      name: `pipeline ≥ 1.0x naive bare orders/s at c=${c}`,
      pass: baseline && r !== null ? r >= 1.0 : null,
      detail:
        r === null ? 'no baseline' : `${r}x (${rate(`pipeline c=${c}`)} vs ${rate(`naive bare c=${c}`)}/s)`,
    });
  }
  for (const c of opts.concurrency.filter((c) => c === 16 || c === 32)) {
    const r = ratio(rate(`pipeline c=${c}`), rate(`shape bare c=${c}`));
    t.push({
      name: `pipeline ≥ 0.85x bare copy of its shape at c=${c}`,
      pass: baseline && r !== null ? r >= 0.85 : null,
      detail:
        r === null ? 'no baseline' : `${r}x (${rate(`pipeline c=${c}`)} vs ${rate(`shape bare c=${c}`)}/s)`,
    });
  }
  if (opts.concurrency.includes(16)) {
    const r = ratio(p50('pipeline c=16'), p50('naive bare c=16'));
    t.push({
      name: 'pipeline p50 ≤ 1.2x naive bare p50 at c=16',
      pass: baseline && r !== null ? r <= 1.2 : null,
      detail: r === null ? 'no baseline' : `${r}x (${p50('pipeline c=16')} vs ${p50('naive bare c=16')} ms)`,
    });
  }
  const best = Math.max(
    0,
    ...run.phases
      .filter((p) => p.kind === 'pipeline' && p.mode === 'closed')
      .map((p) => p.figures!.perSecond),
  );
  const drain = run.headroom.outbox?.perSecond;
  const events = run.eventsPerOrder?.total;
  t.push({
    name: 'outbox drain ≥ 10x pipeline orders/s',
    pass: drain !== undefined && best > 0 ? drain >= 10 * best : null,
    detail:
      drain === undefined
        ? 'not measured'
        : `${round(drain / best, 1)}x (${drain} rows/s vs ${best} orders/s; each order writes ${events ?? '?'} events, so ${events ? round(drain / (best * events), 1) : '?'}x the event rate)`,
  });
  const ingest = run.headroom.ingest?.perSecond;
  t.push({
    name: 'API ingest ≥ 10x pipeline orders/s',
    pass: ingest !== undefined && best > 0 ? ingest >= 10 * best : null,
    detail:
      ingest === undefined
        ? 'not measured'
        : `${round(ingest / best, 1)}x (${ingest} vs ${best} orders/s; PostgreSQL alone ${run.headroom.pgbench?.perSecond ?? '-'} orders/s)`,
  });
  // The app's processes start with the bench, so their VmHWM is this run's. The servers' is their
  // whole life's (RabbitMQ's and PostgreSQL's began long before the run): judged on sampled RSS.
  const peakOf = (g: string, key: 'hwm' | 'sampled') => run.peakMemoryMb[g]?.[key] ?? 0;
  const memoryTarget = (name: string, groups: string[], key: 'hwm' | 'sampled'): Target => ({
    name,
    pass: groups.every((g) => peakOf(g, key) <= 250),
    detail: groups
      .filter((g) => run.peakMemoryMb[g])
      .map((g) => `${g} ${peakOf(g, key)}`)
      .join(', '),
  });
  t.push(memoryTarget('every app process ≤ 250 MB RSS (peak, VmHWM)', run.apps, 'hwm'));
  t.push(memoryTarget('every server process ≤ 250 MB RSS (peak sampled)', SERVER_GROUPS, 'sampled'));

  run.notes.push(
    `${opts.temporal === 'own' ? "Temporal is the bench's own dev server (an empty history at the start of the run); PostgreSQL and RabbitMQ are" : 'Temporal, PostgreSQL and RabbitMQ are'} shared servers: their CPU includes anything else using them during a phase (see "other" for the rest of the machine).`,
    'Bare runs are started and awaited by the bench driver (start + long-poll for the result); pipeline orders are started by the bridge and seen done through RabbitMQ.',
    'VmHWM includes start-up (the worker bundles its workflows with webpack when it starts).',
  );
}

main()
  .catch((err: unknown) => {
    log(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  })
  .finally(() => {
    // Lingering sockets (a keep-alive agent, the Temporal client) must not keep the process alive.
    setTimeout(() => process.exit(), 200).unref();
  });
