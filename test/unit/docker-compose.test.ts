/**
 * docker-compose.yml cannot run on machines without Docker (CI here has none), so its structure is
 * checked instead: the services exist, the ports match the native path, every environment variable
 * the app services get is one lib/config.ts reads, and every command points at a real entry file.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CONFIG_KEYS, loadConfig } from '../../lib/config.js';

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string | number>;
  ports?: string[];
  depends_on?: Record<string, { condition: string }> | string[];
  volumes?: string[];
}

const compose = parse(readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8'), {
  merge: true,
}) as { services: Record<string, Service> };
const services = compose.services;
const appServices = Object.entries(services).filter(([, s]) => s.build !== undefined);

describe('docker-compose.yml', () => {
  it('has the infrastructure from official images and every app process', () => {
    expect(services.postgres?.image).toMatch(/^postgres:/);
    expect(services.rabbitmq?.image).toMatch(/^rabbitmq:.*management/);
    expect(services.temporal?.image).toMatch(/^temporalio\//);
    expect(services['temporal-ui']?.image).toMatch(/^temporalio\/ui:/);
    expect(appServices.map(([name]) => name).sort()).toEqual(
      ['analytics', 'api', 'bridge', 'loyalty', 'migrate', 'outbox', 'worker'].sort(),
    );
  });

  it('publishes the same host ports as the native setup', () => {
    const hostPorts = Object.values(services).flatMap((s) => (s.ports ?? []).map((p) => p.split(':')[0]));
    for (const port of ['8000', '8233', '7233', '5432', '5672', '15672', '9090'])
      expect(hostPorts).toContain(port);
    expect(services.api?.ports).toContain(`${loadConfig({}).PORT}:8000`);
  });

  it('gives app services only environment variables that lib/config.ts reads, all valid', () => {
    for (const [name, service] of appServices) {
      const env = service.environment ?? {};
      for (const key of Object.keys(env)) expect(CONFIG_KEYS, `${name}: ${key}`).toContain(key);
      for (const key of ['DATABASE_URL', 'AMQP_URL', 'TEMPORAL_ADDRESS'])
        expect(env, `${name}: ${key}`).toHaveProperty(key);
      const config = loadConfig(Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])));
      expect(new URL(config.DATABASE_URL).hostname).toBe('postgres');
      expect(new URL(config.AMQP_URL).hostname).toBe('rabbitmq');
      expect(config.TEMPORAL_ADDRESS).toBe('temporal:7233');
    }
  });

  it('runs entry files that exist, after migrations and healthy dependencies', () => {
    for (const [name, service] of appServices) {
      const entry = service.command?.find((arg) => arg.endsWith('.ts'));
      expect(entry, name).toBeDefined();
      expect(existsSync(new URL(`../../${entry}`, import.meta.url)), `${name}: ${entry}`).toBe(true);
      if (name !== 'migrate')
        expect((service.depends_on as Record<string, { condition: string }>)?.migrate?.condition).toBe(
          'service_completed_successfully',
        );
    }
    expect(existsSync(new URL('../../Dockerfile', import.meta.url))).toBe(true);
  });
});

describe('docker-compose.yml: metrics', () => {
  it('runs Prometheus from its official image with the repository configuration for compose', () => {
    const prometheus = services.prometheus!;
    expect(prometheus.image).toMatch(/^prom\/prometheus:v2\./);
    expect(prometheus.volumes).toContain('./deploy/prometheus:/etc/prometheus:ro');
    expect(prometheus.command).toContain('--config.file=/etc/prometheus/prometheus.compose.yml');
    expect(existsSync(new URL('../../deploy/prometheus/prometheus.compose.yml', import.meta.url))).toBe(true);
  });

  it('has the app services listen for Prometheus on every interface', () => {
    for (const [name, service] of appServices)
      expect(service.environment?.METRICS_HOST, name).toBe('0.0.0.0');
  });

  it('provisions Grafana with the dashboard from the repository', () => {
    const grafana = services.grafana!;
    expect(grafana.image).toMatch(/^grafana\/grafana:/);
    for (const volume of grafana.volumes ?? []) {
      const source = volume.split(':')[0]!;
      expect(existsSync(new URL(`../../${source}`, import.meta.url)), source).toBe(true);
    }
    expect(grafana.volumes).toContain(
      './deploy/grafana/acme-orders.json:/var/lib/grafana/dashboards/acme-orders.json:ro',
    );
  });
});

describe('lib/config.ts', () => {
  it('defaults to the local servers and port 8000', () => {
    const config = loadConfig({});
    expect(config.PORT).toBe(8000);
    expect(config.DATABASE_URL).toBe('postgres://acme:acme@127.0.0.1:5432/acme');
    expect(config.TEMPORAL_TASK_QUEUE).toBe('orders');
  });

  it('fails fast naming each variable to fix', () => {
    const attempt = () => loadConfig({ PORT: 'eighty', DATABASE_URL: 'mysql://x' });
    expect(attempt).toThrow(/PORT="eighty"/);
    expect(attempt).toThrow(/DATABASE_URL="mysql:\/\/x": must be a postgres:\/\/ URL/);
  });

  it('never prints the password of a URL it refuses', () => {
    expect(() => loadConfig({ DATABASE_URL: 'mysql://app:s3cret@db:3306/x' })).toThrow(
      /DATABASE_URL="mysql:\/\/app:\*\*\*@db:3306\/x"/,
    );
    expect(() => loadConfig({ DATABASE_URL: 'mysql://app:s3cret@db:3306/x' })).not.toThrow(/s3cret/);
  });
});
