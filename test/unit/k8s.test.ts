/**
 * deploy/k8s, checked offline (scripts/k8s-tools.sh installs the tools; the test command runs it):
 * `kustomize build` of each overlay; every object validated strictly, the built-in kinds with the
 * schemas kubernetes-validate ships and the custom resources with their operators' CRDs
 * (scripts/k8s-validate.py), any object neither can check listed as unchecked; then the manifests
 * against the code: every environment variable is one lib/config.ts reads and parses, each process
 * probes and exposes the ports its settings give it, every process of `npm run up` runs, grace
 * periods cover the drains, and the KEDA triggers read the queues and settings the processes use.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { CONFIG_KEYS, loadConfig, type Config } from '../../lib/config.js';
import { upScriptCommands } from '../helpers/processes.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const KUSTOMIZE = `${root}.tools/bin/kustomize`;
const PYTHON = `${root}.tools/k8s-venv/bin/python`;
const CRDS = `${root}.tools/k8s-crds`;
/** The oldest Kubernetes release the manifests are validated for; they use no API newer than 1.25. */
const KUBERNETES_VERSION = '1.33';
const OVERLAYS = ['local', 'production'] as const;
/** Node's own variables that the manifests may set besides lib/config.ts's. */
const NODE_VARIABLES = ['NODE_EXTRA_CA_CERTS'];
/** Which setting gives each process its HTTP port (the API's serves /health, /ready and /metrics too). */
const PORT_SETTING: Record<string, keyof Config> = {
  'api/main.ts': 'PORT',
  'workers/outbox-main.ts': 'OUTBOX_HTTP_PORT',
  'workers/bridge-main.ts': 'BRIDGE_HTTP_PORT',
  'workers/temporal-worker-main.ts': 'WORKER_HTTP_PORT',
  'subscribers/loyalty/main.ts': 'LOYALTY_HTTP_PORT',
  'subscribers/analytics/main.ts': 'ANALYTICS_HTTP_PORT',
};
/** The queue each RabbitMQ consumer reads, by entry file. */
const QUEUE_SETTING: Record<string, keyof Config> = {
  'workers/bridge-main.ts': 'BRIDGE_QUEUE',
  'subscribers/loyalty/main.ts': 'LOYALTY_QUEUE',
  'subscribers/analytics/main.ts': 'ANALYTICS_QUEUE',
};

// --- the built manifests, loosely typed: what the checks below read ------------------------------
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: unknown };
}
interface Probe {
  httpGet?: { path: string; port: string | number };
}
interface Container {
  name: string;
  command?: string[];
  env?: EnvVar[];
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}
interface PodTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: { containers: Container[]; terminationGracePeriodSeconds?: number };
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  data?: Record<string, string>;
  spec?: Record<string, unknown> & { template?: PodTemplate };
}
interface ScaledObjectSpec {
  scaleTargetRef: { name: string };
  triggers: Array<{ type: string; metadata: Record<string, string>; authenticationRef?: { name: string } }>;
}
interface Report {
  kind: string;
  name: string;
  status: 'valid' | 'invalid' | 'unchecked';
  by?: string;
  errors?: string[];
  reason?: string;
}

function needTool(path: string): void {
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`bash scripts/k8s-tools.sh\` first`);
}

async function build(overlay: string): Promise<string> {
  needTool(KUSTOMIZE);
  const { stdout } = await run(KUSTOMIZE, ['build', `deploy/k8s/overlays/${overlay}`], {
    cwd: root,
    maxBuffer: 16 << 20,
  });
  return stdout;
}

const objectsOf = (yamlText: string): K8sObject[] =>
  parseAllDocuments(yamlText)
    .map((doc) => doc.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);

/** scripts/k8s-validate.py's report on the given manifests. */
function validate(yamlText: string): Promise<Report[]> {
  needTool(PYTHON);
  return new Promise((resolve, reject) => {
    const child = spawn(
      PYTHON,
      ['scripts/k8s-validate.py', '--kubernetes-version', KUBERNETES_VERSION, '--crds', CRDS],
      { cwd: root },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(JSON.parse(out) as Report[]) : reject(new Error(`k8s-validate.py: ${err}`)),
    );
    child.stdin.end(yamlText);
  });
}

/** Names the KEDA scaler reads from a trigger's metadata (from its source, `keda:"name=…"` tags). */
function scalerMetadataNames(scaler: string): Set<string> {
  const source = readFileSync(`${CRDS}/keda-scalers/${scaler}_scaler.go`, 'utf8');
  const names = new Set<string>();
  for (const [, name, order] of source.matchAll(/keda:"name=(\w+),\s*order=([\w;]+)/g)) {
    if (!order!.includes('triggerMetadata') && !order!.includes('resolvedEnv')) continue;
    if (order!.includes('triggerMetadata')) names.add(name!);
    if (order!.includes('resolvedEnv')) names.add(`${name!}FromEnv`);
  }
  return names;
}

/** The source file a container runs: `node dist/api/main.js` runs api/main.ts (npm run build). */
const sourceOf = (arg: string) => arg.replace(/^dist\//, '').replace(/\.js$/, '.ts');
const entryOf = (container: Container) => {
  const compiled = container.command?.find((arg) => /^dist\/.+\.js$/.test(arg));
  return compiled === undefined ? undefined : sourceOf(compiled);
};
const byKind = (objects: K8sObject[], kind: string) => objects.filter((o) => o.kind === kind);
const workloads = (objects: K8sObject[]) =>
  objects.filter((o) => o.kind === 'Deployment' || o.kind === 'Job');
const appContainer = (o: K8sObject) => o.spec!.template!.spec.containers.find((c) => c.name === 'app')!;

/**
 * The environment a workload's app container gets, with each Secret reference standing for a value
 * of the right form (the Secret's content is not in the manifests).
 */
function environmentOf(
  objects: K8sObject[],
  workload: K8sObject,
  problems: string[],
): Record<string, string> {
  const container = appContainer(workload);
  const env: Record<string, string> = {};
  const where = `${workload.kind}/${workload.metadata.name}`;
  for (const source of container.envFrom ?? []) {
    if (!source.configMapRef) {
      problems.push(`${where}: envFrom only from ConfigMaps (Secret keys cannot be checked)`);
      continue;
    }
    const configMap = byKind(objects, 'ConfigMap').find((c) => c.metadata.name === source.configMapRef!.name);
    if (!configMap) problems.push(`${where}: ConfigMap ${source.configMapRef.name} is not in the build`);
    Object.assign(env, configMap?.data ?? {});
  }
  const SECRET_STANDS_FOR: Record<string, string> = {
    DATABASE_URL: 'postgresql://user:secret@db.example:5432/acme',
    AMQP_URL: 'amqps://user:secret@mq.example:5671',
  };
  for (const variable of container.env ?? []) {
    const ref = variable.valueFrom?.secretKeyRef;
    if (ref) env[variable.name] = SECRET_STANDS_FOR[variable.name] ?? 'from-a-secret';
    else if (variable.value !== undefined) env[variable.name] = variable.value;
    else problems.push(`${where}: ${variable.name} has neither a value nor a Secret reference`);
  }
  return env;
}

/** Every mismatch between the built manifests and the code; empty when they agree. */
function crossCheck(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const known = new Set<string>([...CONFIG_KEYS, ...NODE_VARIABLES]);
  const runs = new Map<string, K8sObject>(); // entry file -> Deployment

  for (const workload of workloads(objects)) {
    const where = `${workload.kind}/${workload.metadata.name}`;
    const container = appContainer(workload);
    const env = environmentOf(objects, workload, problems);
    for (const name of Object.keys(env))
      if (!known.has(name)) problems.push(`${where}: ${name} is not a setting lib/config.ts reads`);
    for (const name of ['DATABASE_URL', 'AMQP_URL']) {
      const variable = container.env?.find((v) => v.name === name);
      if (!variable?.valueFrom?.secretKeyRef)
        problems.push(`${where}: ${name} must come from a Secret (it holds a password)`);
    }
    for (const name of ['TEMPORAL_ADDRESS', 'METRICS_HOST'] as const)
      if (!(name in env)) problems.push(`${where}: ${name} is not set (its default is loopback)`);
    let config: Config;
    try {
      config = loadConfig(env);
    } catch (err) {
      problems.push(`${where}: ${(err as Error).message}`);
      continue;
    }
    if (/^(127\.|localhost)/.test(config.TEMPORAL_ADDRESS))
      problems.push(`${where}: TEMPORAL_ADDRESS points at loopback`);
    if (config.METRICS_HOST !== '0.0.0.0')
      problems.push(`${where}: METRICS_HOST must be 0.0.0.0 for the kubelet's probes`);

    const entry = entryOf(container);
    if (!entry || !existsSync(`${root}${entry}`)) {
      problems.push(`${where}: runs ${entry ?? 'no .ts entry'}, which does not exist`);
      continue;
    }
    if (workload.kind === 'Job') continue;
    runs.set(entry, workload);

    // Ports and probes: the port the process's own setting gives it.
    const setting = PORT_SETTING[entry];
    if (!setting) {
      problems.push(`${where}: ${entry} has no port setting known to this test`);
      continue;
    }
    const port = config[setting] as number;
    const portName = container.ports?.find((p) => p.containerPort === port)?.name;
    if (!portName) problems.push(`${where}: no container port ${port} (${setting})`);
    // The API's readiness is /health: its /ready fails while RabbitMQ or Temporal is down, and
    // the API takes orders through both (deploy/k8s/base/api.yaml).
    const probes = {
      startupProbe: '/health',
      livenessProbe: '/health',
      readinessProbe: entry === 'api/main.ts' ? '/health' : '/ready',
    } as const;
    for (const [probe, path] of Object.entries(probes)) {
      const get = container[probe as keyof typeof probes]?.httpGet;
      if (get?.path !== path || (get.port !== portName && get.port !== port))
        problems.push(`${where}: ${probe} must GET ${path} on port ${port} (${setting})`);
    }
    const annotations = workload.spec!.template!.metadata?.annotations ?? {};
    if (annotations['prometheus.io/port'] !== String(port))
      problems.push(`${where}: prometheus.io/port must be ${port}`);
    if (entry === 'workers/temporal-worker-main.ts') {
      const sdk = container.ports?.find((p) => p.name === 'sdk-metrics');
      if (sdk?.containerPort !== config.WORKER_SDK_METRICS_PORT)
        problems.push(
          `${where}: port sdk-metrics must be WORKER_SDK_METRICS_PORT (${config.WORKER_SDK_METRICS_PORT})`,
        );
    }

    // Resources: requests to schedule and autoscale on, a memory limit above the bench's peak.
    const { requests = {}, limits = {} } = container.resources ?? {};
    if (!requests.cpu || !requests.memory || !limits.memory)
      problems.push(`${where}: needs cpu and memory requests and a memory limit`);
    if (entry === 'workers/temporal-worker-main.ts' && mebibytes(limits.memory) < 520)
      problems.push(`${where}: the bench saw the worker at 520 MB; its memory limit is ${limits.memory}`);

    // The grace period covers the process's drain (read from the code that drains).
    const grace = workload.spec!.template!.spec.terminationGracePeriodSeconds ?? 30;
    const preStop = Number(container.lifecycle?.preStop?.exec?.command.at(-1) ?? 0);
    const drain = drainSeconds(entry);
    if (grace < preStop + drain + 5)
      problems.push(
        `${where}: terminationGracePeriodSeconds ${grace} < preStop ${preStop} + drain ${drain} + 5`,
      );

    // A PodDisruptionBudget that selects these pods.
    const labels = workload.spec!.template!.metadata?.labels ?? {};
    const pdb = byKind(objects, 'PodDisruptionBudget').find((p) =>
      Object.entries((p.spec!.selector as { matchLabels: Record<string, string> }).matchLabels).every(
        ([k, v]) => labels[k] === v,
      ),
    );
    if (!pdb) problems.push(`${where}: no PodDisruptionBudget selects its pods`);

    // Consumers scale on their own queue; the worker on its task queue.
    const scaled = byKind(objects, 'ScaledObject').find(
      (s) => (s.spec as unknown as ScaledObjectSpec).scaleTargetRef.name === workload.metadata.name,
    );
    const queueSetting = QUEUE_SETTING[entry];
    const triggers = (scaled?.spec as unknown as ScaledObjectSpec | undefined)?.triggers ?? [];
    if (queueSetting) {
      const trigger = triggers.find((t) => t.type === 'rabbitmq');
      if (!trigger) problems.push(`${where}: no KEDA rabbitmq trigger`);
      else if (trigger.metadata.queueName !== config[queueSetting])
        problems.push(
          `${where}: KEDA reads queue ${trigger.metadata.queueName}, the process ${String(config[queueSetting])} (${queueSetting})`,
        );
    }
    if (entry === 'workers/temporal-worker-main.ts' && !triggers.some((t) => t.type === 'temporal'))
      problems.push(`${where}: no KEDA temporal trigger`);
    for (const trigger of triggers) {
      const accepted = scalerMetadataNames(trigger.type);
      for (const [key, value] of Object.entries(trigger.metadata)) {
        if (!accepted.has(key)) problems.push(`${where}: KEDA's ${trigger.type} scaler reads no "${key}"`);
        if (key.endsWith('FromEnv') && !(value in env))
          problems.push(`${where}: KEDA's ${key} names ${value}, which the container does not set`);
      }
    }
    if (entry === 'api/main.ts') {
      const hpa = byKind(objects, 'HorizontalPodAutoscaler').find(
        (h) => (h.spec!.scaleTargetRef as { name: string }).name === workload.metadata.name,
      );
      const metrics = (hpa?.spec?.metrics ?? []) as Array<{ resource?: { name: string } }>;
      if (!metrics.some((m) => m.resource?.name === 'cpu')) problems.push(`${where}: no HPA on CPU`);
      if (!byKind(objects, 'Service').some((s) => s.metadata.name === workload.metadata.name))
        problems.push(`${where}: no Service`);
    }
  }

  // Every process `npm run up` starts runs here too, with the same node flags (the worker's heap
  // cap), and the migrations Job.
  const started = upScriptCommands().map(({ command, entry }) => ({
    flags: command,
    entry: sourceOf(entry),
  }));
  if (started.length < Object.keys(PORT_SETTING).length)
    problems.push('scripts/up.sh no longer names its processes as this test reads them: update the test');
  for (const { entry, flags } of started) {
    if (!runs.has(entry)) problems.push(`no Deployment runs ${entry} (scripts/up.sh starts it)`);
    for (const o of workloads(objects).filter((w) => entryOf(appContainer(w)) === entry)) {
      const command = appContainer(o).command!;
      const given = command.slice(
        0,
        command.findIndex((arg) => /^dist\/.+\.js$/.test(arg)),
      );
      if (given.join(' ') !== flags.join(' '))
        problems.push(`${o.metadata.name}: ${given.join(' ')}, but scripts/up.sh runs ${flags.join(' ')}`);
    }
  }
  const migrate = byKind(objects, 'Job').find((j) => entryOf(appContainer(j)) === 'db/cli.ts');
  if (!migrate) problems.push('no Job runs the migrations (db/cli.ts)');
  return problems;
}

/**
 * Connections the app may use. Production: what README "Running in production" asks of the external
 * PostgreSQL's max_connections (less the superuser reserve). Local: the CloudNativePG cluster's
 * max_connections less Temporal's pools (temporal-values.yaml) and the reserve.
 */
const RESERVED = 10;
function connectionBudget(overlay: string, objects: K8sObject[]): number {
  if (overlay === 'production') return 250;
  const cluster = byKind(objects, 'Cluster')[0]!;
  const maxConnections = Number(
    (cluster.spec!.postgresql as { parameters: Record<string, string> }).parameters.max_connections,
  );
  const values = parse(readFileSync(`${root}deploy/k8s/overlays/local/temporal-values.yaml`, 'utf8')) as {
    server: { config: { persistence: { datastores: Record<string, { sql: { maxConns: number } }> } } };
  };
  const temporal = Object.values(values.server.config.persistence.datastores).reduce(
    (sum, store) => sum + store.sql.maxConns,
    0,
  );
  return maxConnections - temporal - RESERVED;
}
/**
 * Each process's connections for DATABASE_POOL_MAX: outbox-main.ts and bridge-main.ts cap their pools,
 * and the outbox publisher holds one more connection outside its pool, for LISTEN.
 */
const POOL_OF: Record<string, (max: number) => number> = {
  'workers/outbox-main.ts': (max) => Math.min(max, 4) + 1,
  'workers/bridge-main.ts': (max) => Math.min(max, 4),
  'db/cli.ts': () => 1,
};

/** PostgreSQL connections when every process runs at its upper scaling bound with a full pool. */
function worstCaseConnections(objects: K8sObject[]): number {
  let total = 0;
  for (const workload of workloads(objects)) {
    const entry = entryOf(appContainer(workload))!;
    const config = loadConfig(environmentOf(objects, workload, []));
    const name = workload.metadata.name;
    const hpa = byKind(objects, 'HorizontalPodAutoscaler').find(
      (h) => (h.spec!.scaleTargetRef as { name: string }).name === name,
    );
    const scaled = byKind(objects, 'ScaledObject').find(
      (s) => (s.spec as unknown as ScaledObjectSpec).scaleTargetRef.name === name,
    );
    const replicas =
      (hpa?.spec?.maxReplicas as number | undefined) ??
      (scaled?.spec?.maxReplicaCount as number | undefined) ??
      (workload.spec!.replicas as number | undefined) ??
      1;
    total += replicas * (POOL_OF[entry] ?? ((max) => max))(config.DATABASE_POOL_MAX);
  }
  return total;
}

function mebibytes(quantity: string | undefined): number {
  const match = /^(\d+)(Mi|Gi)$/.exec(quantity ?? '');
  if (!match) return 0;
  return Number(match[1]) * (match[2] === 'Gi' ? 1024 : 1);
}

/**
 * How long each process may take to drain on SIGTERM, read from the code that drains; a pattern that
 * no longer matches (the code moved) fails the test rather than checking nothing.
 */
function drainSeconds(entry: string): number {
  const find = (path: string, pattern: RegExp, unit: 'ms' | 's') => {
    const found = pattern.exec(readFileSync(`${root}${path}`, 'utf8'))?.[1];
    if (found === undefined)
      throw new Error(`${path} no longer matches ${String(pattern)}: update this test`);
    return Number(found.replaceAll('_', '')) / (unit === 'ms' ? 1000 : 1);
  };
  const deadLetterConfirm = () => find('lib/amqp/consumer.ts', /deadLetterTimeoutMs \?\? ([\d_]+)/, 'ms');
  switch (entry) {
    case 'api/main.ts':
      return find('api/main.ts', /DRAIN_TIMEOUT_MS = ([\d_]+)/, 'ms');
    case 'workers/temporal-worker-main.ts':
      return find('workers/temporal-worker.ts', /shutdownGraceTime: '(\d+) seconds'/, 's');
    case 'workers/outbox-main.ts':
      return loadConfig({}).OUTBOX_PUBLISH_TIMEOUT_MS / 1000;
    case 'workers/bridge-main.ts':
      // a workflow start's deadline, then a dead-letter copy's confirm
      return find('workers/bridge.ts', /startTimeoutMs = ([\d_]+)/, 'ms') + deadLetterConfirm();
    default:
      return deadLetterConfirm();
  }
}

const built: Record<string, { text: string; objects: K8sObject[]; report: Report[] }> = {};

beforeAll(async () => {
  await Promise.all(
    OVERLAYS.map(async (overlay) => {
      const text = await build(overlay);
      built[overlay] = { text, objects: objectsOf(text), report: await validate(text) };
    }),
  );
}, 120_000);

describe.each(OVERLAYS)('deploy/k8s/overlays/%s', (overlay) => {
  it('builds, and every object is valid by its schema (none left unchecked)', () => {
    const { report, objects } = built[overlay]!;
    expect(report).toHaveLength(objects.length);
    const byWhom = new Map<string, number>();
    for (const r of report) byWhom.set(r.by ?? r.status, (byWhom.get(r.by ?? r.status) ?? 0) + 1);
    console.info(
      `${overlay}: ${report.length} objects; ` + [...byWhom].map(([by, n]) => `${n} by ${by}`).join(', '),
    );
    expect(report.filter((r) => r.status === 'invalid')).toEqual([]);
    expect(report.filter((r) => r.status === 'unchecked').map((r) => `${r.kind}/${r.name}`)).toEqual([]);
  });

  it('agrees with lib/config.ts and the processes: settings, ports, probes, drains, scaling', () => {
    expect(crossCheck(built[overlay]!.objects)).toEqual([]);
  });

  it('stays within the PostgreSQL connections there are, at every scaling bound', () => {
    const connections = worstCaseConnections(built[overlay]!.objects);
    console.info(`${overlay}: at most ${connections} PostgreSQL connections at the scaling bounds`);
    expect(connections).toBeLessThanOrEqual(connectionBudget(overlay, built[overlay]!.objects));
    if (overlay === 'production')
      expect(readFileSync(`${root}README.md`, 'utf8')).toContain(`holds at most ${connections} connections`);
  });

  it('keeps connection URLs out of ConfigMaps', () => {
    for (const configMap of byKind(built[overlay]!.objects, 'ConfigMap'))
      for (const key of ['DATABASE_URL', 'AMQP_URL']) expect(configMap.data ?? {}).not.toHaveProperty(key);
  });
});

describe('deploy/k8s/overlays/local: the dependencies on one cluster', () => {
  const objects = () => built.local!.objects;
  const values = parse(readFileSync(`${root}deploy/k8s/overlays/local/temporal-values.yaml`, 'utf8')) as {
    server: {
      config: {
        persistence: { datastores: Record<string, { sql: Record<string, string | boolean> }> };
        namespaces: { create: boolean; namespace: Array<{ name: string }> };
      };
    };
  };

  it('takes the connection URLs from the Secrets the operators create for its clusters', () => {
    const cluster = byKind(objects(), 'Cluster')[0]!;
    const rabbit = byKind(objects(), 'RabbitmqCluster')[0]!;
    for (const workload of workloads(objects())) {
      const env = appContainer(workload).env ?? [];
      expect(env.find((v) => v.name === 'DATABASE_URL')?.valueFrom?.secretKeyRef).toEqual({
        name: `${cluster.metadata.name}-app`, // CloudNativePG's application Secret
        key: 'uri',
      });
      expect(env.find((v) => v.name === 'AMQP_URL')?.valueFrom?.secretKeyRef).toEqual({
        name: `${rabbit.metadata.name}-default-user`, // the RabbitMQ operator's default user
        key: 'connection_string',
      });
    }
  });

  it('runs the RabbitMQ image Docker Compose runs (the operator default would be a 4.1: ops/dlq.ts)', () => {
    const rabbit = byKind(objects(), 'RabbitmqCluster')[0]!;
    const compose = parse(readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8')) as {
      services: Record<string, { image?: string }>;
    };
    expect(rabbit.spec?.image).toBe(compose.services.rabbitmq!.image);
    expect(rabbit.spec?.image).toMatch(/^rabbitmq:3\.13-management$/);
  });

  it("points Temporal's Helm values at this overlay's PostgreSQL, databases and Secret", () => {
    const cluster = byKind(objects(), 'Cluster')[0]!;
    const databases = byKind(objects(), 'Database').map((d) => d.spec!.name);
    const secrets = byKind(objects(), 'Secret').map((s) => s.metadata.name);
    const roles = (
      cluster.spec!.managed as { roles: Array<{ name: string; passwordSecret: { name: string } }> }
    ).roles;
    for (const store of Object.values(values.server.config.persistence.datastores)) {
      expect(store.sql.connectAddr).toBe(`${cluster.metadata.name}-rw:5432`);
      expect(databases).toContain(store.sql.databaseName);
      expect(secrets).toContain(store.sql.existingSecret);
      expect(roles).toContainEqual({
        name: store.sql.user,
        ensure: 'present',
        login: true,
        passwordSecret: { name: store.sql.existingSecret },
      });
    }
    const config = loadConfig(
      byKind(objects(), 'ConfigMap').find((c) => c.metadata.name.startsWith('acme-orders-config'))!.data,
    );
    // Release `temporal` → Service temporal-frontend; the namespace the app uses is created.
    expect(config.TEMPORAL_ADDRESS).toBe('temporal-frontend:7233');
    expect(values.server.config.namespaces.create).toBe(true);
    expect(values.server.config.namespaces.namespace.map((n) => n.name)).toContain(config.TEMPORAL_NAMESPACE);
  });
});

describe('deploy/k8s: the checks fail on a broken manifest', () => {
  const mutate = (edit: (objects: K8sObject[]) => void) => {
    const objects = structuredClone(built.local!.objects);
    edit(objects);
    return objects;
  };
  const deployment = (objects: K8sObject[], name: string) =>
    objects.find((o) => o.kind === 'Deployment' && o.metadata.name === name)!;

  it('a misspelled or unparsable setting, a wrong probe port, a foreign queue', () => {
    const problems = crossCheck(
      mutate((objects) => {
        const configMap = objects.find((o) => o.kind === 'ConfigMap')!;
        configMap.data!.BRIDGE_QUEUEE = 'x';
        appContainer(deployment(objects, 'api')).env!.push({ name: 'PORT', value: 'eighty' });
        appContainer(deployment(objects, 'outbox')).readinessProbe!.httpGet!.port = 9102;
        const scaled = objects.find((o) => o.kind === 'ScaledObject' && o.metadata.name === 'loyalty')!;
        (scaled.spec as unknown as ScaledObjectSpec).triggers[0]!.metadata.queueName = 'orders.bridge';
      }),
    );
    expect(problems).toContainEqual(
      expect.stringContaining('BRIDGE_QUEUEE is not a setting lib/config.ts reads'),
    );
    expect(problems).toContainEqual(
      expect.stringMatching(/Deployment\/api: Invalid configuration.*PORT="eighty"/s),
    );
    expect(problems).toContainEqual(
      expect.stringContaining('Deployment/outbox: readinessProbe must GET /ready on port 9101'),
    );
    expect(problems).toContainEqual(
      expect.stringContaining('KEDA reads queue orders.bridge, the process loyalty.points'),
    );
  });

  it('a missing process, a password in plain text, a short grace period, an unknown KEDA field', () => {
    const problems = crossCheck(
      mutate((objects) => {
        objects.splice(objects.indexOf(deployment(objects, 'analytics')), 1);
        const worker = deployment(objects, 'worker');
        appContainer(worker).env = [
          { name: 'DATABASE_URL', value: 'postgres://acme:acme@db:5432/acme' },
          ...appContainer(worker).env!.filter((v) => v.name !== 'DATABASE_URL'),
        ];
        worker.spec!.template!.spec.terminationGracePeriodSeconds = 5;
        const scaled = objects.find((o) => o.kind === 'ScaledObject' && o.metadata.name === 'worker')!;
        (scaled.spec as unknown as ScaledObjectSpec).triggers[0]!.metadata.taskQueeu = 'orders';
      }),
    );
    expect(problems).toContain('no Deployment runs subscribers/analytics/main.ts (scripts/up.sh starts it)');
    expect(problems).toContain(
      'Deployment/worker: DATABASE_URL must come from a Secret (it holds a password)',
    );
    expect(problems).toContainEqual(
      expect.stringContaining('Deployment/worker: terminationGracePeriodSeconds 5'),
    );
    expect(problems).toContain('Deployment/worker: KEDA\'s temporal scaler reads no "taskQueeu"');
  });

  it('an unknown field in a built-in kind or in a custom resource', async () => {
    const text = built
      .local!.text.replace('terminationGracePeriodSeconds: 25', 'terminationGracePeriodSecond: 25')
      .replace(/(kind: RabbitmqCluster\n(?:.*\n)*?spec:\n)/, '$1  replica: 3\n');
    expect(text).not.toBe(built.local!.text);
    const invalid = (await validate(text)).filter((r) => r.status === 'invalid');
    expect(invalid.map((r) => `${r.kind}/${r.name}`).sort()).toEqual([
      'Deployment/api',
      'RabbitmqCluster/acme-rabbitmq',
    ]);
    expect(invalid.find((r) => r.kind === 'RabbitmqCluster')!.errors!.join()).toMatch(
      /'replica' was unexpected/,
    );
  }, 60_000);
});

// The CRDs the test validates against are the ones deploy/k8s/README.md tells you to install.
it('validates custom resources against the operator versions the docs name', () => {
  const sources = readFileSync(`${CRDS}/sources`, 'utf8');
  const docs = readFileSync(`${root}deploy/k8s/README.md`, 'utf8');
  for (const [, module, version] of sources.matchAll(/^(\S+)@(v[\d.]+) /gm)) {
    const repo = module!.replace(/^github\.com\//, '').replace(/\/v\d+$/, '');
    expect(docs, `${repo} ${version}`).toContain(`${repo}`);
    expect(docs, `${repo} ${version}`).toContain(version!);
  }
  expect(readdirSync(CRDS).filter((f) => f.endsWith('.yaml')).length).toBeGreaterThan(0);
});
