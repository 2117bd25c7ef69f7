/**
 * `npm run up -- --scale …` (scripts/up.sh): every instance of every process gets ports of its own,
 * none of them another server's, and Prometheus (deploy/prometheus/prometheus.yml) is told where the
 * further instances are. Read from the script's `--dry-run`, which starts nothing.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../lib/config.js';

const run = promisify(execFile);
const UP = new URL('../../scripts/up.sh', import.meta.url).pathname;
const PROMETHEUS = new URL('../../deploy/prometheus/prometheus.yml', import.meta.url);
/** The servers' ports on this machine: Prometheus, Temporal (frontend, UI, metrics), PostgreSQL, RabbitMQ. */
const SERVER_PORTS = [9090, 7233, 8233, 7244, 5432, 5672, 15672];
const PORT_KEYS = [
  'PORT',
  'OUTBOX_HTTP_PORT',
  'BRIDGE_HTTP_PORT',
  'WORKER_HTTP_PORT',
  'WORKER_SDK_METRICS_PORT',
  'LOYALTY_HTTP_PORT',
  'ANALYTICS_HTTP_PORT',
] as const;

async function dryRun(...args: string[]) {
  // A clean environment: a PORT set in the caller's shell would move every API instance.
  const env = { PATH: process.env.PATH ?? '' };
  const { stdout } = await run('bash', [UP, '--dry-run', ...args], { env });
  const instances = new Map<string, Record<string, number>>();
  const targets = new Map<string, string[]>();
  for (const line of stdout.trim().split('\n')) {
    const prom = /^prometheus (\S+): (.*)$/.exec(line);
    if (prom) {
      targets.set(
        prom[1]!,
        prom[2]!.split(',').map((t) => t.replaceAll('"', '')),
      );
      continue;
    }
    const [, name, command] = /^(\w+): (.*)$/.exec(line)!;
    instances.set(
      name!,
      // The command's port settings (`WORKER_HTTP_PORT=9203`), not node's flags (`--max-old-space-size=96`)
      // nor the worker's allocator setting (`MALLOC_ARENA_MAX=2`).
      Object.fromEntries(
        [...command!.matchAll(/\b([A-Z][A-Z0-9_]*)=(\d+)/g)]
          .filter((m) => (PORT_KEYS as readonly string[]).includes(m[1]!))
          .map((m) => [m[1], Number(m[2])]),
      ),
    );
  }
  return { instances, targets };
}

describe('npm run up -- --scale', () => {
  it('gives every instance its own ports: the API on consecutive ports, probe servers 100 apart', async () => {
    const { instances } = await dryRun('--scale', 'api=3,outbox=2,bridge=2,worker=2,loyalty=2,analytics=2');
    expect([...instances.keys()]).toEqual([
      ...['api', 'api2', 'api3', 'outbox', 'outbox2', 'bridge', 'bridge2', 'worker', 'worker2'],
      ...['loyalty', 'loyalty2', 'analytics', 'analytics2'],
    ]);
    expect(instances.get('api2')).toEqual({ PORT: 8001 });
    expect(instances.get('api3')).toEqual({ PORT: 8002 });
    expect(instances.get('worker2')).toEqual({ WORKER_HTTP_PORT: 9203, WORKER_SDK_METRICS_PORT: 9205 });
    // Every port in use, the first instances' (the config defaults) included, is used once.
    const defaults = loadConfig({});
    const ports = [
      ...PORT_KEYS.map((key) => defaults[key]),
      ...[...instances.values()].flatMap((env) => Object.values(env)),
    ];
    expect(new Set(ports).size).toBe(ports.length);
    for (const port of SERVER_PORTS) expect(ports).not.toContain(port);
  });

  it('tells Prometheus where the further instances are, each job reading its own directory', async () => {
    const { targets } = await dryRun('--scale', 'api=2,worker=2');
    expect(Object.fromEntries(targets)).toEqual({
      api: ['127.0.0.1:8001'],
      worker: ['127.0.0.1:9203'],
      'worker-sdk': ['127.0.0.1:9205'],
    });
    const config = parse(readFileSync(PROMETHEUS, 'utf8')) as {
      scrape_configs: Array<{ job_name: string; file_sd_configs?: Array<{ files: string[] }> }>;
    };
    for (const job of ['api', 'outbox', 'bridge', 'worker', 'worker-sdk', 'loyalty', 'analytics']) {
      const scrape = config.scrape_configs.find((s) => s.job_name === job);
      expect(scrape?.file_sd_configs, job).toEqual([
        { files: [`../../.data/prometheus-targets/${job}/*.json`] },
      ]);
    }
  });

  it('refuses an unknown process or a count out of range, naming it', async () => {
    await expect(dryRun('--scale', 'wroker=2')).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/no process named 'wroker'/),
    });
    await expect(dryRun('--scale', 'api=0')).rejects.toMatchObject({
      stderr: expect.stringMatching(/api=0: give a number of instances from 1 to 10/),
    });
  });
});
