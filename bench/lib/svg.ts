/**
 * A small hand-written SVG chart of one run: completions per second, latency (p50 and p95 of the
 * units completing in each second, log scale) and resident memory per process, over the whole run,
 * with each phase shaded and named.
 */
import type { MemoryPoint } from './meter.js';
import { maxOf, minOf, type SeriesPoint } from './stats.js';

export interface ChartPhase {
  label: string;
  /** Seconds since the run's start. */
  start: number;
  end: number;
  series: SeriesPoint[];
}

const W = 1200;
const RSS_TARGET_MB = 250;
const LEFT = 70;
const RIGHT = 190;
const PANEL_H = 190;
const GAP = 46;
const TOP = 50;
const COLORS = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
  '#393b79',
];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function renderChart(title: string, phases: ChartPhase[], memory: MemoryPoint[]): string {
  const tMax = Math.max(1, maxOf(phases.map((p) => p.end)), maxOf(memory.map((m) => m.t)));
  const plotW = W - LEFT - RIGHT;
  const x = (t: number) => LEFT + (t / tMax) * plotW;
  const out: string[] = [];
  const H = TOP + 3 * PANEL_H + 2 * GAP + 50;
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${LEFT}" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`,
  );

  const panelTop = (i: number) => TOP + i * (PANEL_H + GAP);

  // Phase bands across all three panels.
  phases.forEach((p, i) => {
    const y0 = panelTop(0);
    const y1 = panelTop(2) + PANEL_H;
    out.push(
      `<rect x="${x(p.start).toFixed(1)}" y="${y0}" width="${Math.max(1, x(p.end) - x(p.start)).toFixed(1)}" height="${y1 - y0}" fill="${i % 2 ? '#f3f3f3' : '#e8eef7'}"/>`,
      `<text x="${(x(p.start) + 2).toFixed(1)}" y="${y0 - 4 - (i % 2) * 11}" font-size="9" fill="#333">${esc(p.label)}</text>`,
    );
  });

  // Panel 1: completions per second.
  const points = phases.flatMap((p) => p.series);
  const maxDone = niceMax(
    maxOf(
      points.map((s) => s.done),
      1,
    ),
  );
  panel(out, panelTop(0), 'completed / s', maxDone, (v) => String(v), false);
  for (const p of phases) {
    const y = (v: number) => panelTop(0) + PANEL_H - (v / maxDone) * PANEL_H;
    out.push(
      polyline(
        p.series.map((s) => [x(s.t + 0.5), y(s.done)]),
        '#1f77b4',
        1.5,
      ),
    );
  }

  // Panel 2: latency, log scale.
  const lat = points.flatMap((s) => [s.p50 ?? 0, s.p95 ?? 0]).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.max(1, minOf(lat, 10)))));
  const hi = Math.pow(10, Math.ceil(Math.log10(maxOf(lat, lo * 10))));
  const ly = (v: number) =>
    panelTop(1) + PANEL_H - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * PANEL_H;
  panel(out, panelTop(1), 'latency ms (log)', hi, (v) => String(v), true, lo);
  for (const p of phases) {
    out.push(
      polyline(
        p.series.filter((s) => s.p50).map((s) => [x(s.t + 0.5), ly(s.p50!)]),
        '#2ca02c',
        1.5,
      ),
      polyline(
        p.series.filter((s) => s.p95).map((s) => [x(s.t + 0.5), ly(s.p95!)]),
        '#d62728',
        1,
      ),
    );
  }
  legend(out, panelTop(1), [
    ['p50', '#2ca02c'],
    ['p95', '#d62728'],
  ]);

  // Panel 3: resident memory per process.
  const names = [...new Set(memory.flatMap((m) => Object.keys(m.rssMb)))].filter(
    (n) => n !== 'postgres: bench db backends',
  );
  const maxRss = niceMax(
    maxOf(
      memory.flatMap((m) => Object.values(m.rssMb)),
      10,
    ),
  );
  panel(out, panelTop(2), 'RSS MB (largest process)', maxRss, (v) => String(v), false);
  const my = (v: number) => panelTop(2) + PANEL_H - (v / maxRss) * PANEL_H;
  if (RSS_TARGET_MB < maxRss) {
    const y = my(RSS_TARGET_MB).toFixed(1);
    out.push(
      `<line x1="${LEFT}" x2="${W - RIGHT}" y1="${y}" y2="${y}" stroke="#d62728" stroke-dasharray="6 4"/>`,
      `<text x="${LEFT + 4}" y="${Number(y) - 3}" fill="#d62728" font-size="9">target ${RSS_TARGET_MB} MB</text>`,
    );
  }
  names.forEach((name, i) => {
    const color = COLORS[i % COLORS.length]!;
    // Consecutive samples of one process; a gap (process stopped) breaks the line.
    let run: Array<[number, number]> = [];
    const flush = () => {
      if (run.length > 1) out.push(polyline(run, color, 1.2));
      run = [];
    };
    for (const m of memory) {
      const v = m.rssMb[name];
      if (v === undefined) flush();
      else run.push([x(m.t), my(v)]);
    }
    flush();
  });
  legend(
    out,
    panelTop(2),
    names.map((n, i) => [n, COLORS[i % COLORS.length]!]),
  );

  // Time axis.
  const axisY = panelTop(2) + PANEL_H;
  const step = niceStep(tMax / 10);
  for (let t = 0; t <= tMax; t += step) {
    out.push(`<text x="${x(t).toFixed(1)}" y="${axisY + 14}" text-anchor="middle">${t}</text>`);
  }
  out.push(`<text x="${LEFT + plotW / 2}" y="${axisY + 32}" text-anchor="middle">seconds since start</text>`);
  out.push('</svg>');
  return out.join('\n');
}

function panel(
  out: string[],
  top: number,
  label: string,
  max: number,
  fmt: (v: number) => string,
  log: boolean,
  min = 0,
): void {
  const plotW = W - LEFT - RIGHT;
  out.push(
    `<rect x="${LEFT}" y="${top}" width="${plotW}" height="${PANEL_H}" fill="none" stroke="#999"/>`,
    `<text x="14" y="${top + PANEL_H / 2}" transform="rotate(-90 14 ${top + PANEL_H / 2})" text-anchor="middle">${esc(label)}</text>`,
  );
  const ticks: number[] = [];
  if (log) for (let v = min; v <= max; v *= 10) ticks.push(v);
  else for (let i = 0; i <= 4; i++) ticks.push((max * i) / 4);
  for (const v of ticks) {
    const frac = log ? (Math.log10(v) - Math.log10(min)) / (Math.log10(max) - Math.log10(min)) : v / max;
    const y = top + PANEL_H - frac * PANEL_H;
    out.push(
      `<line x1="${LEFT}" x2="${LEFT + plotW}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#ddd"/>`,
      `<text x="${LEFT - 4}" y="${(y + 4).toFixed(1)}" text-anchor="end">${fmt(Math.round(v * 10) / 10)}</text>`,
    );
  }
}

function legend(out: string[], top: number, items: Array<[string, string]>): void {
  const lx = W - RIGHT + 12;
  items.forEach(([name, color], i) => {
    const y = top + 10 + i * 15;
    out.push(
      `<line x1="${lx}" x2="${lx + 18}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${lx + 22}" y="${y + 4}">${esc(name)}</text>`,
    );
  });
}

function polyline(points: Array<[number, number] | number[]>, color: string, width: number): string {
  if (points.length === 0) return '';
  const d = points.map(([a, b]) => `${a!.toFixed(1)},${b!.toFixed(1)}`).join(' ');
  return `<polyline points="${d}" fill="none" stroke="${color}" stroke-width="${width}"/>`;
}

function niceMax(v: number): number {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function niceStep(v: number): number {
  return niceMax(Math.max(1, v));
}
