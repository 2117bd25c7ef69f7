/**
 * deploy/prometheus and deploy/grafana, checked with Prometheus' own promtool (`scripts/infra.sh tools`
 * installs it): both scrape configurations and the rules are valid, the rules' unit tests pass
 * (rules.test.yml: the outbox alerts firing and clearing, the DLQ alert, ...), every target is a
 * port of lib/config.ts, and the dashboard's queries parse and name only metrics that exist.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { loadConfig } from '../../lib/config.js';
import { METRICS } from '../../lib/metrics.js';

const run = promisify(execFile);
const deploy = fileURLToPath(new URL('../../deploy/', import.meta.url));
const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find(existsSync) ?? 'promtool';

async function promtoolSays(...args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(promtool, args, { cwd: join(deploy, 'prometheus') });
    return stdout + stderr;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    if (e.code === 'ENOENT')
      throw new Error('promtool not found: run `bash scripts/infra.sh tools` first', { cause: err });
    throw new Error(`promtool ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`, { cause: err });
  }
}

interface ScrapeConfig {
  global: Record<string, string>;
  rule_files: string[];
  scrape_configs: Array<{ job_name: string; static_configs: Array<{ targets: string[] }> }>;
}
const readYaml = <T>(path: string): T => parse(readFileSync(join(deploy, path), 'utf8')) as T;
const native = readYaml<ScrapeConfig>('prometheus/prometheus.yml');
const compose = readYaml<ScrapeConfig>('prometheus/prometheus.compose.yml');
const targetsOf = (c: ScrapeConfig) =>
  Object.fromEntries(c.scrape_configs.map((s) => [s.job_name, s.static_configs.flatMap((t) => t.targets)]));

const dashboard = JSON.parse(readFileSync(join(deploy, 'grafana/acme-orders.json'), 'utf8')) as {
  panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
};
const dashboardExprs = dashboard.panels.flatMap((p) =>
  (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })),
);

const scratch = mkdtempSync(join(tmpdir(), 'acme-prometheus-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** acme_* names in a PromQL expression, without the histogram series suffixes. */
const acmeNames = (expr: string) =>
  [...expr.matchAll(/\bacme_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));

describe('Prometheus configuration', () => {
  it('both scrape configurations are valid, rules included', async () => {
    expect(await promtoolSays('check', 'config', 'prometheus.yml')).toMatch(/SUCCESS: 1 rule files found/);
    expect(await promtoolSays('check', 'config', 'prometheus.compose.yml')).toMatch(/SUCCESS/);
  });

  it('the rules are valid, and their unit tests pass (outbox down and back, DLQ, ...)', async () => {
    expect(await promtoolSays('check', 'rules', 'rules.yml')).toMatch(/SUCCESS: \d+ rules found/);
    const out = await promtoolSays('test', 'rules', 'rules.test.yml');
    expect(out).toMatch(/SUCCESS/);
    const tests = readYaml<{ tests: Array<{ alert_rule_test?: Array<{ alertname: string }> }> }>(
      'prometheus/rules.test.yml',
    );
    const tested = new Set(tests.tests.flatMap((t) => (t.alert_rule_test ?? []).map((a) => a.alertname)));
    for (const alert of ['AcmeOutboxPublisherDown', 'AcmeOutboxStalled', 'AcmeDeadLetterQueueNotEmpty'])
      expect(tested, alert).toContain(alert);
  });

  it('scrapes every process on its configured port; compose differs only in host names', () => {
    const config = loadConfig({});
    expect(targetsOf(native)).toEqual({
      api: [`127.0.0.1:${config.PORT}`],
      outbox: [`127.0.0.1:${config.OUTBOX_HTTP_PORT}`],
      bridge: [`127.0.0.1:${config.BRIDGE_HTTP_PORT}`],
      worker: [`127.0.0.1:${config.WORKER_HTTP_PORT}`],
      loyalty: [`127.0.0.1:${config.LOYALTY_HTTP_PORT}`],
      analytics: [`127.0.0.1:${config.ANALYTICS_HTTP_PORT}`],
      'worker-sdk': [`127.0.0.1:${config.WORKER_SDK_METRICS_PORT}`],
      prometheus: ['127.0.0.1:9090'],
    });
    const services = readYaml<{ services: Record<string, unknown> }>('../docker-compose.yml').services;
    const port = (target: string) => target.split(':')[1];
    for (const [job, targets] of Object.entries(targetsOf(compose))) {
      expect(targets.map(port), job).toEqual(targetsOf(native)[job]!.map(port));
      for (const target of targets) {
        const host = target.split(':')[0]!;
        if (host !== 'localhost') expect(Object.keys(services), job).toContain(host);
      }
    }
    expect({ ...compose, scrape_configs: [] }).toEqual({ ...native, scrape_configs: [] });
  });

  it('rules name only metrics that exist', () => {
    const rules = readYaml<{ groups: Array<{ rules: Array<{ expr: string }> }> }>('prometheus/rules.yml');
    const known = new Set<string>(Object.values(METRICS));
    for (const rule of rules.groups.flatMap((g) => g.rules))
      for (const name of acmeNames(rule.expr)) expect(known, rule.expr).toContain(name);
  });
});

describe('Grafana dashboard', () => {
  it('queries only metrics that exist', () => {
    const known = new Set<string>(Object.values(METRICS));
    expect(dashboardExprs.length).toBeGreaterThan(10);
    for (const { title, expr } of dashboardExprs)
      for (const name of acmeNames(expr)) expect(known, `${title}: ${expr}`).toContain(name);
    // Every metric of ours is on it.
    const shown = new Set(dashboardExprs.flatMap(({ expr }) => acmeNames(expr)));
    for (const name of known) expect(shown, name).toContain(name);
  });

  it('every query is valid PromQL (checked by promtool as recording rules)', async () => {
    const file = join(scratch, 'dashboard-queries.yml');
    writeFileSync(
      file,
      stringify({
        groups: [
          {
            name: 'dashboard',
            rules: dashboardExprs.map(({ expr }, i) => ({
              record: `dashboard:query_${i}`,
              expr: expr.replaceAll('$__rate_interval', '1m'),
            })),
          },
        ],
      }),
    );
    expect(await promtoolSays('check', 'rules', file)).toMatch(
      new RegExp(`SUCCESS: ${dashboardExprs.length} rules found`),
    );
  });
});
