/**
 * Measures each phase: CPU-seconds per process group (before/after), peak memory per group (sampled
 * every 500 ms, plus the kernel's own peak VmHWM), PostgreSQL commits on the bench database, and the
 * whole machine's busy CPU (so CPU used by anything else on the machine shows up as "other").
 */
import pg from 'pg';
import {
  allPids,
  findProcesses,
  readCmdline,
  machineBusySeconds,
  processTree,
  readStat,
  sampleGroup,
  singleProcess,
  type GroupSample,
  type ProcessGroup,
} from './procfs.js';
import { postgresTemporalServerPid, type AppName, type Processes } from './stack.js';

export interface GroupUsage {
  /** CPU-seconds used during the phase. */
  cpuSeconds: number;
  /** Largest sampled VmRSS of one member during the phase, MB. */
  peakRssMb: number;
  /** Largest VmHWM (peak since the process started, start-up included) of one member at the end, MB. */
  hwmMb: number;
}

export interface PhaseUsage {
  wallSeconds: number;
  groups: Record<string, GroupUsage>;
  machineBusySeconds: number;
  /** Machine busy CPU not accounted to any measured group (other work on the machine, the kernel). */
  otherCpuSeconds: number;
  pgCommits: number;
  pgRollbacks: number;
  /** The busiest processes outside the measured groups (what "other" was), CPU-seconds. */
  topOther: Array<{ pid: number; command: string; cpuSeconds: number }>;
  /** A shared server restarted (or vanished) during the phase: its figures are incomplete. */
  warnings: string[];
}

export interface MemoryPoint {
  t: number;
  rssMb: Record<string, number>;
}

const MB = 1024 * 1024;

interface Snapshot {
  at: number;
  groups: Map<string, GroupSample>;
  perPid: Map<string, Map<number, number>>;
  busy: number;
  commits: number;
  rollbacks: number;
  everyPid: Map<number, number>;
}

export class Meter {
  private readonly groups: ProcessGroup[] = [];
  private benchBackends: number[] = [];
  private admin: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private phasePeaks = new Map<string, number>();
  private start: Snapshot | undefined;
  readonly memory: MemoryPoint[] = [];
  /** Which processes were found (shown in the report so a reader knows what each row measured). */
  readonly found: Record<string, string> = {};

  constructor(
    private readonly opts: {
      processes: Processes;
      /** The app processes to measure, by name (the system's, and the bench's bare worker). */
      apps: AppName[];
      adminUrl: string;
      database: string;
      temporalPort: number | undefined;
      t0: number;
    },
  ) {}

  /** The shared servers' processes, found again at each phase boundary (a restart changes them). */
  private servers: {
    temporal?: number | undefined;
    postmaster?: number | undefined;
    rabbit?: number | undefined;
  } = {};

  async init(): Promise<void> {
    await this.connect();
    // Every process of the name (the scaling phases run several): CPU summed, RSS of the largest.
    for (const name of this.opts.apps)
      this.groups.push({ name, members: () => ({ pids: this.opts.processes.pids(name) }) });
    this.groups.push(singleProcess('bench driver', () => process.pid));
    this.groups.push(singleProcess('temporal server', () => this.servers.temporal));
    const postmaster = () => this.servers.postmaster;
    this.groups.push({
      name: 'postgres',
      members: () => {
        const root = postmaster();
        return root === undefined ? { pids: [] } : processTree('postgres', root).members();
      },
    });
    this.groups.push({
      name: 'postgres: bench db backends',
      members: () => ({ pids: this.benchBackends }),
    });
    this.groups.push(singleProcess('rabbitmq (beam.smp)', () => this.servers.rabbit));
    await this.resolveServers();
    const { temporal, postmaster: pm, rabbit } = this.servers;
    this.found['temporal server'] = temporal ? `pid ${temporal}` : 'not found on this machine';
    this.found['postgres'] = pm ? `postmaster pid ${pm} and its children` : 'not found';
    this.found['rabbitmq'] = rabbit ? `beam.smp pid ${rabbit}` : 'not found on this machine';
  }

  private async connect(): Promise<void> {
    await this.admin?.end().catch(() => {});
    this.admin = new pg.Client({
      connectionString: this.opts.adminUrl,
      application_name: 'acme-bench-meter',
    });
    this.admin.on('error', () => {}); // a lost connection fails the next query, which reconnects
    await this.admin.connect();
  }

  /** A query on the admin connection, reconnecting once if the server restarted meanwhile. */
  private async query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    try {
      return (await this.admin!.query<R>(sql, params)).rows;
    } catch {
      await this.connect();
      return (await this.admin!.query<R>(sql, params)).rows;
    }
  }

  private async resolveServers(): Promise<void> {
    const port = this.opts.temporalPort;
    // The CLI's dev server, or the official server on PostgreSQL (TEMPORAL_SERVER=postgres).
    this.servers.temporal = port
      ? (findProcesses(
          (cmd) => /\bstart-dev\b/.test(cmd) && new RegExp(`--port[= ]${port}(\\s|$)`).test(cmd),
        )[0] ?? postgresTemporalServerPid(port))
      : undefined;
    const rows = await this.query<{ pid: number }>('select pg_backend_pid() as pid');
    this.servers.postmaster = readStat(rows[0]!.pid)?.ppid;
    this.servers.rabbit = findProcesses((cmd, comm) => comm === 'beam.smp' && /\brabbit\b/.test(cmd))[0];
  }

  get groupNames(): string[] {
    return this.groups.map((g) => g.name);
  }

  /** Starts sampling memory every `everyMs`. */
  startSampling(everyMs = 500): void {
    let n = 0;
    this.timer = setInterval(() => {
      if (n++ % 4 === 0) void this.refreshBackends();
      const point: MemoryPoint = { t: (performance.now() - this.opts.t0) / 1000, rssMb: {} };
      for (const group of this.groups) {
        const sample = sampleGroup(group);
        if (sample.pids.length === 0) continue;
        point.rssMb[group.name] = round(sample.rss / MB, 1);
        this.phasePeaks.set(group.name, Math.max(this.phasePeaks.get(group.name) ?? 0, sample.rss));
      }
      this.memory.push(point);
    }, everyMs);
    this.timer.unref();
  }

  private async refreshBackends(): Promise<void> {
    try {
      const rows = await this.query<{ pid: number }>('select pid from pg_stat_activity where datname = $1', [
        this.opts.database,
      ]);
      this.benchBackends = rows.map((r) => r.pid);
    } catch {
      // keep the last list
    }
  }

  private async snapshot(): Promise<Snapshot> {
    await this.resolveServers();
    await this.refreshBackends();
    const rows = await this.query<{ commits: string; rollbacks: string }>(
      'select xact_commit as commits, xact_rollback as rollbacks from pg_stat_database where datname = $1',
      [this.opts.database],
    );
    const groups = new Map<string, GroupSample>();
    const perPid = new Map<string, Map<number, number>>();
    for (const group of this.groups) {
      const sample = sampleGroup(group);
      groups.set(group.name, sample);
      const cpus = new Map<number, number>();
      for (const pid of sample.pids) cpus.set(pid, readStat(pid)?.cpu ?? 0);
      perPid.set(group.name, cpus);
    }
    const everyPid = new Map<number, number>();
    for (const pid of allPids()) {
      const stat = readStat(pid);
      if (stat) everyPid.set(pid, stat.cpu);
    }
    return {
      at: performance.now(),
      groups,
      perPid,
      everyPid,
      busy: machineBusySeconds(),
      commits: Number(rows[0]?.commits ?? 0),
      rollbacks: Number(rows[0]?.rollbacks ?? 0),
    };
  }

  /**
   * Waits (up to `maxSeconds`) until the whole machine has been nearly idle for a second: the other
   * phases of the bench are over by then, so what is left is someone else's work (a test suite) that
   * would share the two cores and the servers with the next phase. Returns the last busy level, cores.
   */
  async waitForQuiet(
    maxSeconds: number,
    thresholdCores: number,
    onWait: (cores: number) => void,
  ): Promise<number> {
    if (maxSeconds <= 0) return 0;
    const deadline = performance.now() + maxSeconds * 1000;
    let busy = machineBusySeconds();
    let at = performance.now();
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const nowBusy = machineBusySeconds();
      const nowAt = performance.now();
      const cores = (nowBusy - busy) / ((nowAt - at) / 1000);
      if (cores < thresholdCores || nowAt > deadline) return round(cores, 2);
      onWait(round(cores, 2));
      busy = nowBusy;
      at = nowAt;
    }
  }

  /**
   * Starts a phase. PostgreSQL backends publish their statistics at most once a second, so a phase
   * should begin (and end) after a second of quiet for the commit counts to be exact.
   */
  async begin(): Promise<void> {
    this.start = await this.snapshot();
    this.phasePeaks = new Map();
  }

  async end(): Promise<PhaseUsage> {
    const start = this.start!;
    const end = await this.snapshot();
    const groups: Record<string, GroupUsage> = {};
    const warnings: string[] = [];
    for (const name of ['temporal server', 'postgres', 'rabbitmq (beam.smp)']) {
      const before = start.groups.get(name)?.pids[0];
      const after = end.groups.get(name)?.pids[0];
      if (before !== after)
        warnings.push(`${name} changed from pid ${before ?? '-'} to ${after ?? '-'} (restarted?)`);
    }
    let attributed = 0;
    for (const group of this.groups) {
      const a = start.groups.get(group.name)!;
      const b = end.groups.get(group.name)!;
      let cpu: number;
      if (group.name === 'postgres') {
        cpu = Math.max(0, b.cpu - a.cpu); // exited backends are in the postmaster's cutime
      } else {
        // Per process: one started during the phase counts from zero; one that ended mid-phase is lost.
        const before = start.perPid.get(group.name)!;
        cpu = 0;
        for (const [pid, c] of end.perPid.get(group.name)!) cpu += Math.max(0, c - (before.get(pid) ?? 0));
      }
      if (group.name !== 'postgres: bench db backends') attributed += cpu;
      const peak = Math.max(this.phasePeaks.get(group.name) ?? 0, b.rss, a.pids.length > 0 ? a.rss : 0);
      if (b.pids.length === 0 && a.pids.length === 0 && peak === 0) continue;
      groups[group.name] = {
        cpuSeconds: round(cpu, 2),
        peakRssMb: round(peak / MB, 1),
        hwmMb: round(b.hwm / MB, 1),
      };
    }
    const busy = end.busy - start.busy;
    const measured = new Set(
      [...end.perPid.values(), ...start.perPid.values()].flatMap((m) => [...m.keys()]),
    );
    const topOther = [...end.everyPid]
      .filter(([pid]) => !measured.has(pid))
      .map(([pid, cpu]) => ({ pid, cpuSeconds: round(cpu - (start.everyPid.get(pid) ?? 0), 2) }))
      .filter((p) => p.cpuSeconds >= 0.1)
      .sort((a, b) => b.cpuSeconds - a.cpuSeconds)
      .slice(0, 3)
      .map((p) => ({ ...p, command: readCmdline(p.pid).slice(0, 80) || `pid ${p.pid}` }));
    return {
      wallSeconds: round((end.at - start.at) / 1000, 2),
      groups,
      machineBusySeconds: round(busy, 2),
      otherCpuSeconds: round(Math.max(0, busy - attributed), 2),
      pgCommits: end.commits - start.commits,
      pgRollbacks: end.rollbacks - start.rollbacks,
      topOther,
      warnings,
    };
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.admin?.end().catch(() => {});
  }
}

/** CPU milliseconds per unit (order, bare workflow) of each process group; empty for no units. */
export function perUnit(usage: PhaseUsage, units: number): Record<string, number> {
  const out: Record<string, number> = {};
  if (units <= 0) return out;
  for (const [name, g] of Object.entries(usage.groups)) out[name] = round((g.cpuSeconds * 1000) / units, 2);
  return out;
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
