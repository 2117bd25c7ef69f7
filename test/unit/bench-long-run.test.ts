/**
 * The bench's figures and chart for a run as long as the 100 000-order backlog: its arrays
 * are too long to spread into Math.max (the first such run crashed drawing its chart).
 */
import { describe, expect, it } from 'vitest';
import type { UnitResult } from '../../bench/lib/load.js';
import { figures, memoryTrend, series } from '../../bench/lib/stats.js';
import { renderChart } from '../../bench/lib/svg.js';

describe('a 100 000-order run', () => {
  const orders = 200_000;
  const records: UnitResult[] = Array.from({ length: orders }, (_, i) => ({
    sentAt: i,
    doneAt: 1_000 + i * 10,
    outcome: 'order.completed',
  }));

  it('gets its figures and its chart', () => {
    const f = figures(records, (o) => o === 'order.completed');
    expect(f).toMatchObject({ units: orders, completed: orders });
    expect(f.seconds).toBeCloseTo((1_000 + (orders - 1) * 10) / 1000, 1);
    // Two hours of samples of ten processes, every half second.
    const memory = Array.from({ length: 14_400 }, (_, i) => ({
      t: i / 2,
      rssMb: Object.fromEntries(Array.from({ length: 10 }, (_, p) => [`process ${p}`, 100 + p + (i % 7)])),
    }));
    const svg = renderChart(
      'long run',
      [{ label: 'backlog drain', start: 0, end: 7_200, series: series(records, () => true) }],
      memory,
    );
    expect(svg).toMatch(/^<svg[\s\S]*<\/svg>\s*$/);
  });
});

describe('memory over a long drain', () => {
  // 1 000 s, a sample a second: the app's worker flat, the dev server growing with the data it holds.
  const samples = Array.from({ length: 1_000 }, (_, t) => ({
    t,
    rssMb: { worker: 270 + (t % 5), 'temporal server': 320 + t / 5, api: 95 },
  }));
  const groups = ['worker', 'temporal server', 'api'];

  it("judges the app's processes only; the servers' growth is reported", () => {
    const trend = memoryTrend(samples, groups, ['worker', 'api'], 0, 999);
    expect(trend.flat).toBe(true);
    expect(trend.memory['temporal server']!.growth).toBeGreaterThan(100);
    expect(trend.memory.worker).toMatchObject({ early: 272, late: 272, peak: 274, growth: 0 });
  });

  it('a process of the app that keeps growing is not flat', () => {
    const leaking = samples.map((p) => ({ ...p, rssMb: { ...p.rssMb, api: 95 + p.t / 10 } }));
    const trend = memoryTrend(leaking, groups, ['worker', 'api'], 0, 999);
    expect(trend.flat).toBe(false);
    expect(trend.memory.api!.growth).toBeGreaterThan(20);
  });
});
