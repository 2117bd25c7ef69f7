/**
 * `npm run bench:resume -- --id <id>`: drains what is left of a backlog run that was kept
 * (`npm run bench -- --keep --temporal shared --backlog N …`) and stopped before its drain ended.
 *
 * Why: on this 2-core machine a 100 000-order backlog drains in about three hours, longer than a
 * working session, and every process is killed when the session ends. Everything a drain needs is
 * durable: the orders and their outbox rows in the run's database, the messages in its quorum
 * queues, the sagas in Temporal's history (a dev server on a file of its own, restarted on that
 * file). This starts the app processes against the run's names again, measures the drain as the
 * bench does (CPU per order per process, RSS sampled every 500 ms, judged flat or growing), and
 * reads progress from the database (an order's final status and when it was written), which
 * counts every order however many segments the drain took. Each segment writes its own results to
 * `bench/results/<timestamp>-resume-<id>/`; the last one, which finds nothing left, drops the run's
 * database and RabbitMQ names (unless `--keep`).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { Command } from 'commander';
import { loadConfig } from '../lib/config.js';
import { FINAL_STATUSES } from '../domain/order.js';
import { buildOnce } from '../test/helpers/processes.js';
import { describeMachine } from './lib/machine.js';
import { Meter, perUnit, round } from './lib/meter.js';
import { systemGroups } from './lib/report.js';
import {
  Processes,
  ROOT,
  adminQuery,
  appsFromUpScript,
  benchAppEnv,
  benchNames,
  dbCli,
  deleteTopology,
  dropBenchDatabase,
  freePort,
  tail,
} from './lib/stack.js';
import { memoryTrend, type MemoryTrend } from './lib/stats.js';

const program = new Command()
  .name('npm run bench:resume --')
  .description('Drain what is left of a kept backlog run (npm run bench -- --keep … --backlog N).')
  .requiredOption('--id <id>', 'the run\'s id, from its "own names: database acme_bench_<id> …" line')
  .option(
    '--temporal-address <host:port>',
    "the Temporal server holding the run's sagas (default: TEMPORAL_ADDRESS)",
  )
  .option('--log-level <level>', 'LOG_LEVEL of the app processes', 'info')
  .option('--keep', "keep the run's database and queues once the drain is complete")
  .option('--progress-seconds <s>', 'seconds between progress lines', Number, 30)
  .addHelpText(
    'after',
    '\nExample:\n  bash scripts/infra.sh dev-server 7243 /path/to/kept/temporal.db &\n' +
      '  TEMPORAL_ADDRESS=127.0.0.1:7243 npm run bench:resume -- --id 2ea1a5b4\n',
  );

interface Options {
  id: string;
  temporalAddress?: string;
  logLevel: string;
  keep?: boolean;
  progressSeconds: number;
}

const FINAL = [...FINAL_STATUSES];
// The Meter's clock (its memory samples' `t` is seconds since t0 on it).
const t0 = performance.now();
const now = () => performance.now() - t0;
const startedAt = new Date();
const log = (line: string) => console.log(line);

interface OrderCounts {
  total: number;
  final: number;
  byStatus: Record<string, number>;
  /** Outbox rows not yet published: the drain is over only when they are gone too. */
  unpublished: number;
}

async function orderCounts(databaseUrl: string): Promise<OrderCounts> {
  const rows = await adminQuery<{ status: string; n: number }>(
    databaseUrl,
    'select status, count(*)::int as n from orders group by status order by status',
  );
  const [pending] = await adminQuery<{ n: number }>(
    databaseUrl,
    "select count(*)::int as n from event_outbox where status = 'PENDING'",
  );
  const byStatus = Object.fromEntries(rows.map((r) => [r.status, r.n]));
  return {
    total: rows.reduce((sum, r) => sum + r.n, 0),
    final: rows.filter((r) => FINAL.includes(r.status as never)).reduce((sum, r) => sum + r.n, 0),
    byStatus,
    unpublished: pending?.n ?? 0,
  };
}

/** The whole backlog's timeline, whatever the segments: when it was accepted, when each 10 000th order ended. */
async function timeline(databaseUrl: string): Promise<Record<string, string | number>> {
  const [span] = await adminQuery<{ first: Date; last: Date; done: Date | null }>(
    databaseUrl,
    `select min(created_at) as first, max(created_at) as last,
            max(updated_at) filter (where status = any($1)) as done
     from orders`,
    [FINAL],
  );
  const marks = await adminQuery<{ n: number; at: Date }>(
    databaseUrl,
    `select n::int, updated_at as at from (
       select updated_at, row_number() over (order by updated_at) as n from orders where status = any($1)
     ) ranked where n % 10000 = 0 order by n`,
    [FINAL],
  );
  return {
    firstAccepted: span!.first.toISOString(),
    lastAccepted: span!.last.toISOString(),
    lastFinal: span!.done?.toISOString() ?? '-',
    ...Object.fromEntries(marks.map((m) => [`final #${m.n}`, m.at.toISOString()])),
  };
}

async function main(opts: Options): Promise<void> {
  const config = loadConfig();
  const address = opts.temporalAddress ?? config.TEMPORAL_ADDRESS;
  const names = benchNames(opts.id, config.DATABASE_URL, await freePort());
  const known = await adminQuery(config.DATABASE_URL, 'select 1 from pg_database where datname = $1', [
    names.database,
  ]);
  if (known.length === 0) {
    throw new Error(`no kept bench run ${opts.id}: there is no database ${names.database}`);
  }
  const connection = await Connection.connect({ address });
  try {
    await connection.workflowService.describeNamespace({ namespace: names.namespace }).catch((err) => {
      throw new Error(
        `Temporal at ${address} has no namespace ${names.namespace}: start the server that ran the backlog, on its file (${String(err)})`,
      );
    });
  } finally {
    await connection.close();
  }

  const stamp = new Date().toISOString().replace(/\..*$/, '').replaceAll(':', '-');
  const resultsDir = path.join(ROOT, 'bench/results', `${stamp}-resume-${opts.id}`);
  mkdirSync(resultsDir, { recursive: true });
  const before = await orderCounts(names.databaseUrl);
  log(
    `resuming bench run ${opts.id}: ${before.final}/${before.total} orders final, ${before.unpublished} events unpublished (${JSON.stringify(before.byStatus)}); Temporal at ${address}`,
  );

  // The code may be newer than the run's first segment: its migrations first, as a deploy would.
  dbCli(names, 'migrate');
  const apps = appsFromUpScript();
  const appNames = apps.map((a) => a.name);
  buildOnce();
  const env = await benchAppEnv(names, config.AMQP_URL, opts.logLevel);
  env.TEMPORAL_ADDRESS = address;
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'acme-bench-resume-'));
  const processes = new Processes(env, workDir, apps);
  const meter = new Meter({
    processes,
    apps: appNames,
    adminUrl: names.adminUrl,
    database: names.database,
    temporalPort: Number(/:(\d+)$/.exec(address)?.[1]) || undefined,
    t0,
  });
  await meter.init();
  meter.startSampling(500);

  // Stopped by a signal, the processes drain in flight and everything stays for the next segment.
  let stopping: string | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    stopping ??= `interrupted (${signal})`;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let after = before;
  let start = 0;
  let end = 0;
  /** When the first order of this segment ended: memory is judged from there, past the start-up. */
  let firstFinalAt: number | undefined;
  try {
    await meter.begin();
    start = now() / 1000;
    for (const name of appNames) processes.start(name);
    let lastLine = 0;
    while (after.final < after.total || after.unpublished > 0) {
      if (stopping) break;
      processes.assertAlive(appNames); // a process that dies ends the segment, naming it
      await new Promise((resolve) => setTimeout(resolve, 5000)); // a count over the whole backlog each time
      after = await orderCounts(names.databaseUrl);
      if (firstFinalAt === undefined && after.final > before.final) firstFinalAt = now() / 1000;
      if (now() - lastLine >= opts.progressSeconds * 1000) {
        lastLine = now();
        const seconds = now() / 1000 - start;
        const rss = meter.memory.at(-1)?.rssMb ?? {};
        log(
          `  draining: ${after.final}/${after.total} final · +${after.final - before.final} in ${seconds.toFixed(0)} s = ${((after.final - before.final) / seconds).toFixed(1)}/s · RSS MB ${appNames.map((n) => `${n} ${rss[n]?.toFixed(0) ?? '-'}`).join(', ')}`,
        );
      }
    }
    end = now() / 1000;
    await new Promise((resolve) => setTimeout(resolve, 1200)); // PostgreSQL's statistics, as the bench waits
  } finally {
    const usage = await meter.end().catch(() => undefined);
    await processes.stopAll();
    await meter.close();
    mkdirSync(path.join(resultsDir, 'logs'), { recursive: true });
    for (const [name, file] of processes.logFiles) {
      writeFileSync(path.join(resultsDir, 'logs', `${name}.tail.log`), tail(file, 200));
    }
    rmSync(workDir, { recursive: true, force: true });

    const drained = after.final - before.final;
    const seconds = Math.max(0.001, (end || now() / 1000) - start);
    const cpuMsPerOrder = usage ? perUnit(usage, drained) : {};
    const trend = memoryTrend(
      meter.memory,
      systemGroups(appNames),
      appNames,
      firstFinalAt ?? start,
      end || now() / 1000,
    );
    const complete = after.final === after.total && after.unpublished === 0;
    const result: SegmentResult & Record<string, unknown> = {
      id: opts.id,
      startedAt: startedAt.toISOString(),
      machine: describeMachine(),
      temporalAddress: address,
      before,
      after,
      segment: { drained, seconds: round(seconds, 1), perSecond: round(drained / seconds, 2) },
      cpuMsPerOrder,
      machineCpuMsPerOrder:
        drained > 0 && usage ? round((usage.machineBusySeconds * 1000) / drained, 1) : null,
      ...trend,
      complete,
      stoppedBy: stopping ?? (complete ? 'complete' : 'ended'),
      timeline: await timeline(names.databaseUrl),
      memorySeries: meter.memory.filter((_, i) => i % 20 === 0),
    };
    writeFileSync(path.join(resultsDir, 'results.json'), `${JSON.stringify(result, null, 2)}\n`);
    const report = segmentReport(result);
    writeFileSync(path.join(resultsDir, 'report.txt'), `${report}\n`);
    log(`\n${report}\nresults: ${path.relative(process.cwd(), resultsDir)}/`);
    if (complete && !opts.keep) {
      await dropBenchDatabase(names);
      await deleteTopology(config.AMQP_URL, names);
      log(
        `dropped database ${names.database} and the run's RabbitMQ names (the Temporal server's file is yours to delete)`,
      );
    }
  }
}

type SegmentResult = {
  id: string;
  before: OrderCounts;
  after: OrderCounts;
  segment: { drained: number; seconds: number; perSecond: number };
  cpuMsPerOrder: Record<string, number>;
  machineCpuMsPerOrder: number | null;
  memory: MemoryTrend['memory'];
  flat: boolean;
  complete: boolean;
  stoppedBy: string;
  timeline: Record<string, string | number>;
};

/** What a segment prints and writes to report.txt. */
function segmentReport(r: SegmentResult): string {
  const list = (entries: Array<[string, unknown]>) =>
    entries.map(([k, v]) => `${k} ${String(v ?? '-')}`).join(' · ');
  return [
    `bench:resume ${r.id}: ${r.segment.drained} orders drained in ${r.segment.seconds} s = ${r.segment.perSecond}/s (${r.complete ? 'the backlog is complete' : r.stoppedBy})`,
    `orders: ${r.after.final}/${r.after.total} final ${JSON.stringify(r.after.byStatus)}; ${r.after.unpublished} events unpublished`,
    `CPU ms per order: ${list(Object.entries(r.cpuMsPerOrder))} · machine ${r.machineCpuMsPerOrder ?? '-'}`,
    `RSS MB, median of the first → last quarter from the segment's first final order (peak): ${list(
      Object.entries(r.memory).map(([k, m]) => [k, `${m.early} → ${m.late} (${m.peak})`]),
    )}; the app's memory ${r.flat ? 'flat' : 'GROWING'}`,
    `timeline: ${list(Object.entries(r.timeline))}`,
  ].join('\n');
}

main(program.parse().opts<Options>())
  .then(() => process.exit(0))
  .catch((err: unknown) => {
    console.error(`bench:resume FAILED: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
