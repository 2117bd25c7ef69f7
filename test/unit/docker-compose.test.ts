/**
 * docker-compose.yml cannot run on machines without Docker (CI here has none), so its structure is
 * checked instead: the services exist, the ports match the native path and are published on
 * 127.0.0.1 only, every long-running service has a healthcheck and every job is waited for until it
 * completes, the images are supported and pinned (Temporal's server with its admin-tools schema setup,
 * not the deprecated auto-setup), every environment variable the app services get is one
 * lib/config.ts reads, and every command and mounted file exists.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CONFIG_KEYS, loadConfig } from '../../lib/config.js';
import { upScriptCommands } from '../helpers/processes.js';

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string | number>;
  ports?: string[];
  depends_on?: Record<string, { condition: string }> | string[];
  volumes?: string[];
  restart?: string;
  healthcheck?: { test?: string[]; disable?: boolean };
}

const compose = parse(readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8'), {
  merge: true,
}) as { services: Record<string, Service> };
const services = compose.services;
const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');
/** The app image's `ENV KEY=VALUE` lines. */
const IMAGE_ENV = Object.fromEntries(
  [...dockerfile.matchAll(/^ENV\s+([A-Z_][A-Z0-9_]*)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]),
);
const appServices = Object.entries(services).filter(([, s]) => s.build !== undefined);
const dependencies = (s: Service) =>
  Array.isArray(s.depends_on)
    ? Object.fromEntries(s.depends_on.map((name) => [name, { condition: 'service_started' }]))
    : (s.depends_on ?? {});
/** Services another one waits for to finish (schemas, namespace, migrations): jobs, not servers. */
const oneShots = new Set(
  Object.values(services).flatMap((s) =>
    Object.entries(dependencies(s))
      .filter(([, d]) => d.condition === 'service_completed_successfully')
      .map(([name]) => name),
  ),
);
/** `127.0.0.1:8000:8000` -> { ip, host, container } */
const parsePort = (spec: string) => {
  const [ip, host, container, ...rest] = spec.split(':');
  return { ip, host, container, rest };
};

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

  it('publishes the same host ports as the native setup, on 127.0.0.1 only', () => {
    const published = Object.values(services).flatMap((s) => (s.ports ?? []).map(parsePort));
    for (const port of published) {
      expect(port.ip, JSON.stringify(port)).toBe('127.0.0.1');
      expect(port.rest).toEqual([]);
    }
    const hostPorts = published.map((p) => p.host);
    for (const port of ['8000', '8233', '7233', '5432', '5672', '15672', '9090', '3000', '9411'])
      expect(hostPorts).toContain(port);
    expect(services.api?.ports).toContain(`127.0.0.1:${loadConfig({}).PORT}:8000`);
  });

  it('has a healthcheck on every long-running service, and waits only on checks that exist', () => {
    for (const [name, service] of Object.entries(services)) {
      if (oneShots.has(name)) {
        // A job: restarted only on failure, so that "completed" means it succeeded.
        expect(service.restart ?? 'no', name).toMatch(/^(no|on-failure(:\d+)?)$/);
        continue;
      }
      expect(service.healthcheck?.disable, name).not.toBe(true);
      expect(service.healthcheck?.test?.length, `${name} has no healthcheck`).toBeGreaterThan(1);
    }
    for (const [name, service] of Object.entries(services))
      for (const [dependency, { condition }] of Object.entries(dependencies(service))) {
        expect(services[dependency], `${name} -> ${dependency}`).toBeDefined();
        expect(['service_healthy', 'service_completed_successfully'], `${name} -> ${dependency}`).toContain(
          condition,
        );
        if (condition === 'service_healthy') expect(oneShots.has(dependency), dependency).toBe(false);
      }
  });

  it('uses supported, pinned images: Temporal server + admin-tools schema setup, no auto-setup', () => {
    for (const [name, service] of Object.entries(services)) {
      if (service.build !== undefined) continue;
      expect(service.image, name).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(service.image, name).not.toMatch(/:latest$/);
      expect(service.image, name).not.toMatch(/temporalio\/auto-setup/);
    }
    expect(services.temporal?.image).toMatch(/^temporalio\/server:/);
    const schema = services['temporal-schema']!;
    const namespace = services['temporal-namespace']!;
    expect(schema.image).toMatch(/^temporalio\/admin-tools:/);
    expect(namespace.image).toMatch(/^temporalio\/admin-tools:/);
    // the schema tool of the same Temporal release as the server
    expect(schema.image!.split(':')[1]).toBe(services.temporal!.image!.split(':')[1]);
    expect(dependencies(services.temporal!)['temporal-schema']?.condition).toBe(
      'service_completed_successfully',
    );
    expect(dependencies(namespace).temporal?.condition).toBe('service_healthy');
    expect(namespace.environment?.NAMESPACE).toBe(loadConfig({}).TEMPORAL_NAMESPACE);
    for (const job of [schema, namespace]) {
      const script = job.entrypoint?.at(-1);
      expect(job.volumes?.map((v) => v.split(':')[1])).toContain(script);
    }
  });

  it('mounts only files of the repository that exist', () => {
    for (const [name, service] of Object.entries(services))
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0]!;
        if (!source.startsWith('./')) continue; // a named volume
        expect(existsSync(new URL(`../../${source}`, import.meta.url)), `${name}: ${source}`).toBe(true);
      }
  });

  it('gives app services only environment variables that lib/config.ts reads, all valid', () => {
    for (const [name, service] of appServices) {
      const env = service.environment ?? {};
      for (const key of Object.keys(env)) expect(CONFIG_KEYS, `${name}: ${key}`).toContain(key);
      for (const key of ['DATABASE_URL', 'AMQP_URL', 'TEMPORAL_ADDRESS'])
        expect(env, `${name}: ${key}`).toHaveProperty(key);
      // What the process sees: the image's ENV (NODE_ENV=production), then the service's.
      const config = loadConfig({
        ...IMAGE_ENV,
        ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])),
      });
      expect(new URL(config.DATABASE_URL).hostname).toBe('postgres');
      expect(new URL(config.AMQP_URL).hostname).toBe('rabbitmq');
      expect(config.TEMPORAL_ADDRESS).toBe('temporal:7233');
    }
  });

  it("builds an image whose user may write the API's local key pair (AUTH_LOCAL_KEY_DIR, under .data)", () => {
    expect(IMAGE_ENV).toHaveProperty('NODE_ENV'); // the ENV lines are read (above)
    const user = dockerfile.search(/^USER node$/m);
    const chown = dockerfile.search(/^RUN mkdir -p \/app\/\.data && chown node:node \/app\/\.data$/m);
    expect(user).toBeGreaterThan(0);
    expect(chown).toBeGreaterThan(0);
    expect(chown).toBeLessThan(user);
    expect(loadConfig({}).AUTH_LOCAL_KEY_DIR).toBe('.data/auth');
  });

  it("runs each process with the command scripts/up.sh runs (the worker's arenas and heap cap), as npm run start:* does, under its own login", () => {
    const commands = upScriptCommands();
    expect(commands.some((c) => c.nodeFlags.length > 0)).toBe(true);
    expect(commands.some((c) => Object.keys(c.env).length > 0)).toBe(true);
    const { scripts } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      scripts: Record<string, string>;
    };
    for (const { entry, command: upCommand } of commands) {
      const services = appServices.filter(([, s]) => s.command?.includes(entry));
      expect(services, entry).not.toHaveLength(0);
      for (const [name, service] of services) {
        expect(service.command!.slice(0, service.command!.indexOf(entry)), name).toEqual(upCommand);
      }
      const [script = 'start:?', command = ''] =
        Object.entries(scripts).find(([key, cmd]) => key.startsWith('start:') && cmd.includes(entry)) ?? [];
      // Under its own service's logins (scripts/as.sh), as `npm run up` starts it: under the default
      // RabbitMQ login the outbox would stamp every event with a sender the subscribers do not trust.
      const service = script.slice('start:'.length);
      expect(command, `npm run ${script} for ${entry}`).toContain(
        ['bash scripts/as.sh', service, ...upCommand, entry].join(' '),
      );
    }
  });

  it('runs entry files that exist, after migrations and healthy dependencies', () => {
    for (const [name, service] of appServices) {
      // Compiled in the image (`npm run build`): dist/api/main.js is built from api/main.ts.
      const entry = service.command?.find((arg) => /^dist\/.+\.js$/.test(arg));
      expect(entry, name).toBeDefined();
      const source = entry!.replace(/^dist\//, '').replace(/\.js$/, '.ts');
      expect(existsSync(new URL(`../../${source}`, import.meta.url)), `${name}: ${source}`).toBe(true);
      if (name !== 'migrate') {
        expect(dependencies(service).migrate?.condition).toBe('service_completed_successfully');
        expect(dependencies(service)['temporal-namespace']?.condition).toBe('service_completed_successfully');
      }
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

  it('runs Zipkin from its official image on 9411', () => {
    expect(services.zipkin?.image).toMatch(/^openzipkin\/zipkin:/);
    expect(services.zipkin?.ports).toContain('127.0.0.1:9411:9411');
  });

  it("asks each app service's own probe port for its health", () => {
    const config = loadConfig({});
    const portOf: Record<string, number> = {
      api: config.PORT,
      outbox: config.OUTBOX_HTTP_PORT,
      bridge: config.BRIDGE_HTTP_PORT,
      worker: config.WORKER_HTTP_PORT,
      loyalty: config.LOYALTY_HTTP_PORT,
      analytics: config.ANALYTICS_HTTP_PORT,
    };
    for (const [name, port] of Object.entries(portOf))
      expect(services[name]?.healthcheck?.test?.join(' '), name).toContain(`http://127.0.0.1:${port}/health`);
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
