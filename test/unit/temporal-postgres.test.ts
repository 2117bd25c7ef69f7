/**
 * deploy/temporal: the Temporal server on PostgreSQL and its Web UI (scripts/temporal-postgres.sh).
 * Rendered with their templates' defaults (what `TEMPORAL_SERVER=postgres npm run up` runs), no
 * port of theirs is one the app or its other servers use (the sample config's metrics on 8000 were
 * the API's), the script derives the same ports from the frontend's, and the server reads its
 * databases and dynamic config from where the script puts them.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CONFIG_KEYS, loadConfig } from '../../lib/config.js';
import { SEARCH_ATTRIBUTES } from '../../workflows/contract.js';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
/** `{{ env "X" | default "Y" }}` → Y: the file as the server renders it with nothing set. */
const renderDefaults = (text: string) =>
  text.replace(/\{\{\s*env "(\w+)" \| default "([^"]*)"\s*\}\}/g, (_, _key: string, value: string) => value);

const server = parse(renderDefaults(read('deploy/temporal/postgres.yaml'))) as {
  persistence: { datastores: Record<string, { sql: { databaseName: string; connectAddr: string } }> };
  global: { metrics: { prometheus: { listenAddress: string } } };
  services: Record<string, { rpc: { grpcPort: number; membershipPort: number; httpPort?: number } }>;
  clusterMetadata: { clusterInformation: { active: { rpcAddress: string } } };
  dynamicConfigClient: { filepath: string };
};
const ui = parse(renderDefaults(read('deploy/temporal/ui/postgres.yaml'))) as {
  host: string;
  port: number;
  temporalGrpcAddress: string;
};
const script = read('scripts/temporal-postgres.sh');

const rpc = (service: string) => server.services[service]!.rpc;
const serverPorts = () =>
  [
    ...Object.values(server.services).flatMap(({ rpc }) => [rpc.grpcPort, rpc.membershipPort, rpc.httpPort]),
    Number(server.global.metrics.prometheus.listenAddress.split(':')[1]),
  ].filter((port): port is number => port !== undefined);

describe('Temporal on PostgreSQL (deploy/temporal)', () => {
  it('listens where the app expects it: frontend 7233, Web UI 8233 on the same server, loopback only', () => {
    const config = loadConfig({});
    expect(`127.0.0.1:${rpc('frontend').grpcPort}`).toBe(config.TEMPORAL_ADDRESS);
    expect(server.clusterMetadata.clusterInformation.active.rpcAddress).toBe(config.TEMPORAL_ADDRESS);
    expect(`http://localhost:${ui.port}`).toBe(config.TEMPORAL_UI_URL);
    expect(ui.temporalGrpcAddress).toBe(config.TEMPORAL_ADDRESS);
    expect(ui.host).toBe('127.0.0.1');
    expect(server.global.metrics.prometheus.listenAddress).toMatch(/^127\.0\.0\.1:/);
  });

  it('uses no port of the app (its instances included) or of the other servers', () => {
    const config = loadConfig({});
    const appPorts = CONFIG_KEYS.filter((key) => key.endsWith('_PORT')).map((key) => config[key] as number);
    // `npm run up -- --scale` (up to 10 of each): the API on PORT+n, probe servers 100 apart.
    const scaled = appPorts.flatMap((port) =>
      Array.from({ length: 10 }, (_, n) => (port === config.PORT ? port + n : port + 100 * n)),
    );
    const taken = new Set([...scaled, 9090, 5432, 5672, 15672, 8233]);
    const ports = serverPorts();
    expect(ports.filter((port) => taken.has(port))).toEqual([]);
    expect(new Set(ports).size).toBe(ports.length);
  });

  it('the script derives the same ports from the frontend port (so a second server can run beside)', () => {
    const offsets: Record<string, number> = {};
    for (const [, key, offset] of script.matchAll(/(TEMPORAL_PG_\w+_PORT)=\$\(\(F ([+-] \d+)\)\)/g))
      offsets[key!] = Number(offset!.replace(' ', ''));
    const F = rpc('frontend').grpcPort;
    expect({
      history: F + offsets.TEMPORAL_PG_HISTORY_PORT!,
      matching: F + offsets.TEMPORAL_PG_MATCHING_PORT!,
      worker: F + offsets.TEMPORAL_PG_WORKER_PORT!,
      http: F + offsets.TEMPORAL_PG_HTTP_PORT!,
      metrics: F + offsets.TEMPORAL_PG_METRICS_PORT!,
      frontendMembership: F + offsets.TEMPORAL_PG_FRONTEND_MEMBERSHIP_PORT!,
      workerMembership: F + offsets.TEMPORAL_PG_WORKER_MEMBERSHIP_PORT!,
    }).toEqual({
      history: rpc('history').grpcPort,
      matching: rpc('matching').grpcPort,
      worker: rpc('worker').grpcPort,
      http: rpc('frontend').httpPort,
      metrics: Number(server.global.metrics.prometheus.listenAddress.split(':')[1]),
      frontendMembership: rpc('frontend').membershipPort,
      workerMembership: rpc('worker').membershipPort,
    });
  });

  it('keeps its own databases on the local PostgreSQL, and reads the dynamic config the script names', () => {
    const stores = Object.values(server.persistence.datastores).map((s) => s.sql);
    expect(stores.map((s) => s.databaseName).sort()).toEqual(['temporal', 'temporal_visibility']);
    for (const s of stores) expect(s.connectAddr).toBe('127.0.0.1:5432');
    expect(server.dynamicConfigClient.filepath).toBe('deploy/temporal/dynamicconfig.yaml');
    expect(script).toContain('TEMPORAL_PG_DYNAMIC_CONFIG="$ROOT/deploy/temporal/dynamicconfig.yaml"');
    expect(parse(read('deploy/temporal/dynamicconfig.yaml'))).toMatchObject({
      'system.forceSearchAttributesCacheRefreshOnRead': [{ value: true }],
    });
  });

  it('dispatches activities eagerly, as the dev server setup does (the same server behaviour on both)', () => {
    expect(parse(read('deploy/temporal/dynamicconfig.yaml'))).toMatchObject({
      'system.enableActivityEagerExecution': [{ value: true }],
    });
    expect(read('scripts/infra.sh')).toContain(
      '--dynamic-config-value system.enableActivityEagerExecution=true',
    );
  });

  // A saga that upserts an unregistered attribute fails its workflow task, and the worker may not be
  // allowed to register it: both setup scripts register every attribute the saga uses.
  it('registers every search attribute the saga uses, as the dev server setup does', () => {
    const registered = (path: string) =>
      read(path)
        .match(/^SEARCH_ATTRIBUTES=\(([^)]*)\)$/m)?.[1]
        ?.split(/\s+/)
        .sort();
    const saga = Object.keys(SEARCH_ATTRIBUTES).sort();
    expect(registered('scripts/temporal-postgres.sh')).toEqual(saga);
    expect(registered('scripts/infra.sh')).toEqual(saga);
  });
});
