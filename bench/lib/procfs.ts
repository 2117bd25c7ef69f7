/**
 * Per-process CPU time and memory from /proc (Linux only).
 *
 * CPU: utime + stime of /proc/<pid>/stat, in clock ticks (USER_HZ, 100 on Linux). A group of
 * processes (PostgreSQL: the postmaster and its backends) counts every live member plus the
 * postmaster's cutime + cstime, which is where the CPU of a backend that exited (and was reaped)
 * goes: so connections that come and go during a phase are still counted.
 *
 * Memory: VmRSS (now) and VmHWM (the process's peak since it started) of /proc/<pid>/status.
 */
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100;

export interface ProcStat {
  pid: number;
  comm: string;
  ppid: number;
  /** utime + stime, seconds. */
  cpu: number;
  /** cutime + cstime (reaped children), seconds. */
  childCpu: number;
}

export function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // gone
  }
  // comm is in parentheses and may contain spaces: split after the last ')'.
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const fields = text.slice(close + 2).split(' ');
  // fields[0] is field 3 (state): field n is fields[n - 3].
  const num = (n: number) => Number(fields[n - 3]);
  return {
    pid,
    comm,
    ppid: num(4),
    cpu: (num(14) + num(15)) / TICKS_PER_SECOND,
    childCpu: (num(16) + num(17)) / TICKS_PER_SECOND,
  };
}

export interface Memory {
  /** Resident set now, bytes. */
  rss: number;
  /** Peak resident set since the process started, bytes. */
  hwm: number;
}

export function readMemory(pid: number): Memory | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

export function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch {
    return '';
  }
}

export function allPids(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

/** Busy CPU-seconds of the whole machine (all cores) since boot, from /proc/stat. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const [, user, nice, system, _idle, _iowait, irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / 100;
}

/** A named set of processes measured together, found anew at each sample (pids may change). */
export interface ProcessGroup {
  name: string;
  /** The processes of the group now; `reaper` is the one whose cutime/cstime holds its exited members. */
  members(): { pids: number[]; reaper?: number | undefined };
}

export interface GroupSample {
  /** Live members' CPU plus the reaper's children's CPU, seconds since each started. */
  cpu: number;
  /** Largest resident set of one member, bytes. */
  rss: number;
  /** Largest peak resident set (VmHWM) of one member, bytes. */
  hwm: number;
  /** Sum of the members' resident sets, bytes (for PostgreSQL this counts shared memory many times). */
  rssSum: number;
  pids: number[];
}

export function sampleGroup(group: ProcessGroup): GroupSample {
  const { pids, reaper } = group.members();
  let cpu = 0;
  let rss = 0;
  let hwm = 0;
  let rssSum = 0;
  const live: number[] = [];
  for (const pid of pids) {
    const stat = readStat(pid);
    if (!stat) continue;
    live.push(pid);
    cpu += stat.cpu;
    if (pid === reaper) cpu += stat.childCpu;
    const mem = readMemory(pid);
    if (mem) {
      rss = Math.max(rss, mem.rss);
      hwm = Math.max(hwm, mem.hwm);
      rssSum += mem.rss;
    }
  }
  return { cpu, rss, hwm, rssSum, pids: live };
}

/** One process (a pid that may be replaced when the process is restarted). */
export function singleProcess(name: string, pid: () => number | undefined): ProcessGroup {
  return {
    name,
    members: () => {
      const p = pid();
      return { pids: p === undefined ? [] : [p] };
    },
  };
}

/** A process and all its direct children (the postmaster and its backends). */
export function processTree(name: string, root: number): ProcessGroup {
  return {
    name,
    members: () => {
      const children = allPids().filter((pid) => readStat(pid)?.ppid === root);
      return { pids: [root, ...children], reaper: root };
    },
  };
}

/** Pids whose command line matches, oldest first. */
export function findProcesses(match: (cmdline: string, comm: string) => boolean): number[] {
  return allPids()
    .filter((pid) => {
      const stat = readStat(pid);
      return stat !== undefined && match(readCmdline(pid), stat.comm);
    })
    .sort((a, b) => a - b);
}
