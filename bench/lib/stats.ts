/** Percentiles, throughput and per-second time series of unit results. */
import type { UnitResult } from './load.js';

/** Math.max over any number of values: spreading a long run's 100 000 into Math.max overflows the stack. */
export function maxOf(values: readonly number[], floor = -Infinity): number {
  let max = floor;
  for (const v of values) if (v > max) max = v;
  return max;
}

/** Math.min over any number of values (see maxOf). */
export function minOf(values: readonly number[], ceiling = Infinity): number {
  let min = ceiling;
  for (const v of values) if (v < min) min = v;
  return min;
}

export interface LatencyStats {
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export interface SeriesPoint {
  /** Seconds since the run's start (bucket start). */
  t: number;
  /** Units completed in this second. */
  done: number;
  p50: number | null;
  p95: number | null;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function latencyStats(values: number[]): LatencyStats {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = sorted.reduce((s, v) => s + v, 0) / (sorted.length || 1);
  return {
    p50: r1(percentile(sorted, 50)),
    p95: r1(percentile(sorted, 95)),
    p99: r1(percentile(sorted, 99)),
    max: r1(sorted[sorted.length - 1] ?? NaN),
    mean: r1(mean),
  };
}

export interface PhaseFigures {
  units: number;
  completed: number;
  outcomes: Record<string, number>;
  /** From the first start to the last completion, seconds. */
  seconds: number;
  /**
   * Completed units over the phase, first start to last completion. For a closed loop whose unit
   * count is a multiple of its concurrency this is concurrency ÷ mean latency, ramp and tail included.
   */
  perSecond: number;
  latencyMs: LatencyStats;
  acceptMs?: LatencyStats;
}

/** `ok` outcomes count as completed; the rest (errors, timeouts) are reported as outcomes only. */
export function figures(records: UnitResult[], ok: (outcome: string) => boolean): PhaseFigures {
  const outcomes: Record<string, number> = {};
  for (const r of records) outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
  const done = records.filter((r) => ok(r.outcome));
  const first = minOf(records.map((r) => r.sentAt));
  const last = maxOf(done.map((r) => r.doneAt));
  const seconds = done.length > 0 ? (last - first) / 1000 : NaN;
  const accept = records.filter((r) => r.acceptMs !== undefined).map((r) => r.acceptMs!);
  return {
    units: records.length,
    completed: done.length,
    outcomes,
    seconds: Math.round(seconds * 100) / 100,
    perSecond: r1(done.length / seconds),
    latencyMs: latencyStats(done.map((r) => r.doneAt - r.sentAt)),
    ...(accept.length > 0 ? { acceptMs: latencyStats(accept) } : {}),
  };
}

/** Completions per second and their latency percentiles, bucketed by completion time. */
export function series(records: UnitResult[], ok: (outcome: string) => boolean): SeriesPoint[] {
  const buckets = new Map<number, number[]>();
  for (const r of records) {
    if (!ok(r.outcome)) continue;
    const t = Math.floor(r.doneAt / 1000);
    const list = buckets.get(t) ?? [];
    list.push(r.doneAt - r.sentAt);
    buckets.set(t, list);
  }
  const keys = [...buckets.keys()].sort((a, b) => a - b);
  if (keys.length === 0) return [];
  const out: SeriesPoint[] = [];
  for (let t = keys[0]!; t <= keys[keys.length - 1]!; t++) {
    const list = (buckets.get(t) ?? []).sort((a, b) => a - b);
    out.push({
      t,
      done: list.length,
      p50: list.length ? r1(percentile(list, 50)) : null,
      p95: list.length ? r1(percentile(list, 95)) : null,
    });
  }
  return out;
}

function r1(v: number): number {
  return Math.round(v * 10) / 10;
}

/** RSS samples of named processes over time (bench/lib/meter.ts MemoryPoint). */
export interface RssPoint {
  /** Seconds since the run's start. */
  t: number;
  rssMb: Record<string, number>;
}

export interface MemoryTrend {
  /** Median RSS over the first and the last quarter, per process, MB; growth = late − early. */
  memory: Record<string, { early: number; late: number; peak: number; growth: number }>;
  /** Every process of `judged` within 20 MB or 15 % of its first quarter in its last. */
  flat: boolean;
}

/**
 * Median RSS in the first and last quarter of [from, to] (seconds) for each of `groups`, and whether
 * memory held flat. Only `judged` (the app's processes) decide `flat`: the servers hold the data the
 * run writes (a store of 100 000 histories grows, and should), so their growth is reported, not judged.
 */
export function memoryTrend(
  samples: readonly RssPoint[],
  groups: readonly string[],
  judged: readonly string[],
  from: number,
  to: number,
): MemoryTrend {
  const points = samples.filter((p) => p.t >= from && p.t <= to);
  // Quarters, but at least a second each so a short drain still has samples to compare.
  const q = Math.max((to - from) / 4, 1);
  const early = points.filter((p) => p.t <= from + q);
  const late = points.filter((p) => p.t >= to - q);
  const median = (values: number[]) => {
    const s = [...values].sort((a, b) => a - b);
    return s.length ? s[Math.floor(s.length / 2)]! : NaN;
  };
  const memory: MemoryTrend['memory'] = {};
  let flat = true;
  for (const name of groups) {
    const e = median(early.map((p) => p.rssMb[name]).filter((v): v is number => v !== undefined));
    const l = median(late.map((p) => p.rssMb[name]).filter((v): v is number => v !== undefined));
    if (Number.isNaN(e) || Number.isNaN(l)) continue;
    const growth = r1(l - e);
    if (judged.includes(name) && growth > Math.max(20, e * 0.15)) flat = false;
    memory[name] = {
      early: e,
      late: l,
      peak: maxOf(
        points.map((p) => p.rssMb[name] ?? 0),
        0,
      ),
      growth,
    };
  }
  return { memory, flat };
}
