/** The printed report: tables per phase, ratios to the bare baselines, headroom, targets. */
import type { Machine } from './machine.js';
import type { PhaseUsage } from './meter.js';
import type { PhaseFigures, SeriesPoint } from './stats.js';
import type { DrainResult, IngestResult, PgbenchResult } from './headroom.js';
import { STAGES, type StageStats } from './stages.js';

export type PhaseKind = 'naive' | 'shape' | 'pipeline' | 'backlog-accept' | 'backlog-drain' | 'headroom';

export interface PhaseResult {
  name: string;
  kind: PhaseKind;
  mode?: 'closed' | 'open';
  concurrency?: number;
  rate?: number;
  /** Seconds since the run's start. */
  start: number;
  end: number;
  figures?: PhaseFigures;
  usage: PhaseUsage;
  /** CPU milliseconds per completed unit, per process group. */
  cpuMsPerUnit?: Record<string, number>;
  commitsPerUnit?: number;
  series: SeriesPoint[];
  /** Pipeline phases: where an order's time went (bench/lib/stages.ts). */
  stages?: StageStats;
}

export interface BacklogResult {
  orders: number;
  acceptPerSecond: number;
  /** From starting publisher, bridge and worker to the last final event (start-up included). */
  drainSeconds: number;
  drainPerSecond: number;
  /** From the first final event to the last (start-up excluded). */
  steadyPerSecond: number;
  completed: number;
  outcomes: Record<string, number>;
  /** Median RSS over the first and the last quarter of the drain, per process, MB. */
  memory: Record<string, { early: number; late: number; peak: number; growth: number }>;
  /** Every process of the app within 20 MB or 15 % of where it started (the servers are not judged). */
  flat: boolean;
}

export interface Headroom {
  outbox?: DrainResult & { cpuMsPerRow?: Record<string, number> };
  ingest?: IngestResult;
  pgbench?: PgbenchResult;
}

export interface ShapeCheck {
  matches: boolean;
  saga: string[];
  bare: string[];
  sagaWorkflowTasks: number;
  bareWorkflowTasks: number;
}

export interface Target {
  name: string;
  pass: boolean | null;
  detail: string;
}

export interface RunResult {
  startedAt: string;
  resultsDir: string;
  machine: Machine;
  options: Record<string, unknown>;
  /** The app processes of the pipeline, as scripts/up.sh names them. */
  apps: string[];
  /** The app code measured: commit and uncommitted changes. */
  source: string;
  processes: Record<string, string>;
  phases: PhaseResult[];
  eventsPerOrder?: Record<string, number>;
  backlog?: BacklogResult;
  headroom: Headroom;
  shapeCheck?: ShapeCheck;
  ratios: Array<Record<string, number | string | null>>;
  targets: Target[];
  peakMemoryMb: Record<string, { sampled: number; hwm: number }>;
  /** RSS of the largest process of each group, MB, one point per second (t: seconds since start). */
  memorySeries?: Array<{ t: number; rssMb: Record<string, number> }>;
  notes: string[];
}

/** The servers the system runs on, measured beside the app's processes. */
export const SERVER_GROUPS = ['temporal server', 'postgres', 'rabbitmq (beam.smp)'];
const SHORT: Record<string, string> = {
  'bare-worker': 'bare-wkr',
  'temporal server': 'temporal',
  'postgres: bench db backends': '(bench-db)',
  'rabbitmq (beam.smp)': 'rabbitmq',
  'bench driver': 'driver',
};

/** The process groups as columns, in display order: the app processes, then the servers, then the bench's. */
function groupColumns(apps: string[]): Array<[string, string]> {
  return [
    ...apps,
    'bare-worker',
    'temporal server',
    'postgres',
    'postgres: bench db backends',
    'rabbitmq (beam.smp)',
    'bench driver',
  ].map((g) => [g, SHORT[g] ?? g.slice(0, 10)]);
}

/** Processes of the system itself (the RSS target applies to these, not to the bench's helpers). */
export function systemGroups(apps: string[]): string[] {
  return [...apps, ...SERVER_GROUPS];
}

const pad = (s: string | number, n: number) => String(s).padStart(n);
const padR = (s: string | number, n: number) => String(s).padEnd(n);
const fmt = (v: number | undefined | null, digits = 1) =>
  v === undefined || v === null || Number.isNaN(v) ? '-' : v.toFixed(digits);

export function formatReport(run: RunResult): string {
  const out: string[] = [];
  const m = run.machine;
  out.push('== Machine ==');
  out.push(`${m.cpuModel} · ${m.cores} cores · ${m.ramGb} GB RAM · ${m.os} (${m.kernel}) · node ${m.node}`);
  out.push(
    Object.entries(m.servers)
      .map(([k, v]) => `${k} ${v}`)
      .join(' · '),
  );
  out.push(
    `measured processes: ${Object.entries(run.processes)
      .map(([k, v]) => `${k}: ${v}`)
      .join('; ')}`,
  );
  out.push('');

  const measured = run.phases.filter((p) => p.figures);
  out.push(
    '== Throughput and latency (pipeline: POST → final event at a subscriber; bare: client start → result) ==',
  );
  out.push(
    `${padR('phase', 30)}${pad('units', 7)}${pad('done', 7)}${pad('per s', 9)}${pad('p50 ms', 9)}${pad('p95 ms', 9)}${pad('p99 ms', 9)}${pad('max ms', 9)}${pad('commits/u', 11)}${pad('busy', 7)}${pad('other', 7)}  outcomes`,
  );
  for (const p of measured) {
    const f = p.figures!;
    out.push(
      `${padR(p.name, 30)}${pad(f.units, 7)}${pad(f.completed, 7)}${pad(fmt(f.perSecond), 9)}${pad(fmt(f.latencyMs.p50, 0), 9)}${pad(fmt(f.latencyMs.p95, 0), 9)}${pad(fmt(f.latencyMs.p99, 0), 9)}${pad(fmt(f.latencyMs.max, 0), 9)}${pad(fmt(p.commitsPerUnit, 2), 11)}${pad(fmt(p.usage.machineBusySeconds / p.usage.wallSeconds, 2), 7)}${pad(fmt(p.usage.otherCpuSeconds / p.usage.wallSeconds, 2), 7)}  ${Object.entries(
        f.outcomes,
      )
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
  }
  out.push(
    `  busy = cores of the machine busy during the phase, of its ${m.cores}: near ${m.cores} the phase is bound by CPU, below it by waiting (round trips, timers).`,
  );
  out.push(
    '  other = cores busy with work outside the bench during the phase (another test suite, say): above ~0.25 the phase shared the machine.',
  );
  const accept = measured.filter((p) => p.figures?.acceptMs);
  if (accept.length) {
    out.push(
      `POST /orders answer time (202), p50/p95/p99 ms: ${accept
        .map(
          (p) =>
            `${p.name} ${fmt(p.figures!.acceptMs!.p50, 0)}/${fmt(p.figures!.acceptMs!.p95, 0)}/${fmt(p.figures!.acceptMs!.p99, 0)}`,
        )
        .join('; ')}`,
    );
  }
  out.push('');

  const staged = run.phases.filter((p) => p.stages);
  if (staged.length) {
    out.push(
      'Where a completed order spends its time, p50 / p95 ms (from outbox timestamps; see bench/lib/stages.ts):',
    );
    out.push(`${padR('phase', 30)}${STAGES.map((st) => pad(st, 15)).join('')}`);
    for (const p of staged) {
      out.push(
        `${padR(p.name, 30)}${STAGES.map((st) => pad(`${p.stages![st].p50} / ${p.stages![st].p95}`, 15)).join('')}`,
      );
    }
    out.push(
      '  api: POST → order written; outbox in: → order.placed published; to saga: → reserveInventory runs (RabbitMQ, bridge, Temporal start);',
    );
    out.push(
      '  saga: → completeOrder runs; outbox out: → order.completed published; subscriber: → seen by the bench.',
    );
    out.push('');
  }

  out.push('== CPU milliseconds per unit (order or bare workflow), by process, during each phase ==');
  const cols = groupColumns(run.apps).filter(([g]) =>
    run.phases.some((p) => p.cpuMsPerUnit?.[g] !== undefined),
  );
  out.push(
    `${padR('phase', 30)}${cols.map(([, s]) => pad(s, 11)).join('')}${pad('other', 9)}${pad('machine', 9)}`,
  );
  for (const p of run.phases.filter((q) => q.cpuMsPerUnit)) {
    const done = p.figures?.completed ?? 0;
    out.push(
      `${padR(p.name, 30)}${cols.map(([g]) => pad(fmt(p.cpuMsPerUnit![g], 2), 11)).join('')}${pad(fmt(done ? (p.usage.otherCpuSeconds * 1000) / done : NaN, 2), 9)}${pad(fmt(done ? (p.usage.machineBusySeconds * 1000) / done : NaN, 2), 9)}`,
    );
  }
  out.push(
    "  postgres = the postmaster and all its children (every database); (bench-db) = the backends connected to the bench's database, part of postgres.",
  );
  for (const p of run.phases.filter((q) => q.cpuMsPerUnit && (q.kind === 'pipeline' || q.kind === 'shape'))) {
    const shares = Object.entries(p.cpuMsPerUnit!).filter(([g]) => g !== 'postgres: bench db backends');
    const total = shares.reduce((sum, [, v]) => sum + v, 0);
    out.push(
      `  profile ${p.name}: ${total.toFixed(0)} ms CPU per unit = ${shares
        .sort((a, b) => b[1] - a[1])
        .map(([g, v]) => `${g} ${Math.round((100 * v) / total)}%`)
        .join(', ')}`,
    );
  }
  out.push(
    '  other = busy CPU of the whole machine not in any column (other work, kernel); machine = all busy CPU.',
  );
  out.push('');

  out.push('== CPU-seconds and peak RSS per process, per phase (sampled peak MB / VmHWM MB) ==');
  for (const p of run.phases) {
    const parts = Object.entries(p.usage.groups).map(
      ([g, u]) => `${g} ${u.cpuSeconds}s ${u.peakRssMb}/${u.hwmMb}MB`,
    );
    out.push(
      `${p.name} (${p.usage.wallSeconds}s wall, machine busy ${p.usage.machineBusySeconds}s, other ${p.usage.otherCpuSeconds}s, pg commits ${p.usage.pgCommits}${p.usage.pgRollbacks ? `, rollbacks ${p.usage.pgRollbacks}` : ''}): ${parts.join(' · ')}`,
    );
    for (const w of p.usage.warnings) out.push(`    WARNING: ${w}`);
    if (p.usage.topOther.length) {
      out.push(
        `    busiest other processes: ${p.usage.topOther.map((o) => `${o.command} ${o.cpuSeconds}s`).join('; ')}`,
      );
    }
  }
  out.push('');

  if (run.eventsPerOrder) {
    out.push(
      `Events written per order (pipeline phases): ${Object.entries(run.eventsPerOrder)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
    out.push('');
  }

  if (run.ratios.length) {
    out.push('== Pipeline against the bare baselines (same concurrency / rate) ==');
    for (const r of run.ratios) {
      out.push(
        Object.entries(r)
          .map(([k, v]) => `${k} ${typeof v === 'number' ? fmt(v, 2) : (v ?? '-')}`)
          .join(' · '),
      );
    }
    out.push('');
  }

  if (run.backlog) {
    const b = run.backlog;
    out.push('== Backlog (orders accepted with publisher, bridge and worker stopped, then drained) ==');
    out.push(
      `${b.orders} orders accepted at ${fmt(b.acceptPerSecond)}/s; drained ${b.completed} in ${fmt(b.drainSeconds)} s from starting the processes = ${fmt(b.drainPerSecond)}/s (${fmt(b.steadyPerSecond)}/s from the first completion); outcomes ${Object.entries(
        b.outcomes,
      )
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
    out.push(
      `memory during the drain (median RSS MB, first quarter → last quarter, peak): ${Object.entries(b.memory)
        .map(([k, v]) => `${k} ${v.early}→${v.late} (peak ${v.peak})`)
        .join(
          '; ',
        )}  => the app's processes ${b.flat ? 'flat' : 'GROWING'} (the servers hold the data: not judged)`,
    );
    out.push('');
  }

  const h = run.headroom;
  if (h.outbox || h.ingest || h.pgbench) {
    out.push('== Headroom ==');
    if (h.outbox) {
      out.push(
        `outbox drain: ${h.outbox.rows} rows published in ${h.outbox.seconds} s = ${h.outbox.perSecond} rows/s${h.outbox.timedOut ? ' (TIMED OUT)' : ''}`,
      );
    }
    if (h.ingest) {
      const i = h.ingest;
      out.push(
        `API ingest (autocannon, ${i.connections} connections, ${i.seconds} s, API alone): ${i.accepted} accepted = ${i.perSecond} orders/s; non-2xx ${i.non2xx}, errors ${i.errors}; latency p50 ${i.latencyMs.p50} ms, p99 ${i.latencyMs.p99} ms; orders in the database ${i.ordersInDatabase}`,
      );
    }
    if (h.pgbench) {
      const g = h.pgbench;
      out.push(
        `PostgreSQL alone (pgbench, the API's placement statements, ${g.clients} clients, ${g.seconds} s): ${g.transactions} orders = ${g.perSecond} orders/s, latency avg ${g.latencyMsAverage} ms; pgbench's own CPU ${g.clientCpuSeconds} s`,
      );
    }
    out.push('');
  }

  out.push('== Peak memory per process over the run (largest sampled RSS / VmHWM, MB) ==');
  out.push(
    Object.entries(run.peakMemoryMb)
      .map(([k, v]) => `${k} ${v.sampled}/${v.hwm}`)
      .join(' · '),
  );
  out.push('');

  if (run.shapeCheck) {
    const s = run.shapeCheck;
    out.push('== Shape check: one pipeline saga history against one bare saga-shape history ==');
    if (s.matches) {
      out.push(
        `same commands and events (${s.saga.length} non-workflow-task events, ${s.sagaWorkflowTasks} workflow tasks each)`,
      );
    } else {
      out.push(`WARNING: the bare copy no longer matches the saga; update bench/workflows/saga-shape.ts`);
      out.push(`  saga (${s.sagaWorkflowTasks} workflow tasks): ${s.saga.join(' ')}`);
      out.push(`  bare (${s.bareWorkflowTasks} workflow tasks): ${s.bare.join(' ')}`);
    }
    out.push('');
  }

  out.push('== Targets ==');
  for (const t of run.targets) {
    out.push(`${t.pass === null ? 'n/a ' : t.pass ? 'PASS' : 'MISS'}  ${padR(t.name, 58)} ${t.detail}`);
  }
  if (run.notes.length) {
    out.push('');
    out.push('== Notes ==');
    for (const n of run.notes) out.push(`- ${n}`);
  }
  return out.join('\n');
}
