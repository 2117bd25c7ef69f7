/**
 * Authentication pieces without a database: the local key pair (made once, whatever races), the
 * token command, the role claim at a dotted path, verification against an OIDC provider's JWKS
 * served over HTTP on loopback (and a 503 when that provider is down), and the OpenAPI document's
 * bearer scheme.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SignJWT, decodeJwt, decodeProtectedHeader, importJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../api/app.js';
import { createAuthenticator, localAuthenticator, rolesOf } from '../../api/auth.js';
import { ApiError } from '../../api/errors.js';
import { runTokenCli } from '../../cli/token.js';
import type { Pool } from '../../db/pool.js';
import {
  LOCAL_KEY_FILE,
  ensureLocalKeyPair,
  generateLocalKeyPair,
  signLocalToken,
} from '../../lib/auth-keys.js';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'acme-auth-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('the local key pair', () => {
  it('is made once, private to its owner, and racing callers all get the same one', async () => {
    const dir = path.join(tempDir(), 'auth');
    const pairs = await Promise.all(Array.from({ length: 5 }, () => ensureLocalKeyPair(dir)));
    expect(new Set(pairs.map((p) => p.privateJwk.kid)).size).toBe(1);
    const file = path.join(dir, LOCAL_KEY_FILE);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = await ensureLocalKeyPair(dir);
    expect(again.privateJwk).toEqual(JSON.parse(readFileSync(file, 'utf8')));
    expect(again.jwks.keys[0]).not.toHaveProperty('d');
  });
});

describe('npm run token', () => {
  async function run(argv: string[], env: Record<string, string>) {
    let stdout = '';
    let stderr = '';
    const code = await runTokenCli(argv, env, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
    return { code, stdout, stderr };
  }

  it('prints a customer token alone on stdout, 24 h, that the API accepts as that customer', async () => {
    const dir = tempDir();
    const env = { AUTH_LOCAL_KEY_DIR: dir };
    const { code, stdout, stderr } = await run(['C100'], env);
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const claims = decodeJwt(stdout.trim());
    expect(claims).toMatchObject({
      sub: 'C100',
      iss: 'acme-orders-local',
      aud: 'acme-orders-api',
      roles: ['customer'],
    });
    expect(claims.exp! - claims.iat!).toBe(24 * 3600);
    expect(decodeProtectedHeader(stdout.trim()).alg).toBe('ES256');

    const authenticate = await createAuthenticator(loadConfig(env));
    expect(await authenticate(stdout.trim())).toEqual({
      kind: 'customer',
      subject: 'C100',
      customerId: 'C100',
    });
    const operator = await run(['--operator'], env);
    expect(await authenticate(operator.stdout.trim())).toEqual({ kind: 'operator', subject: 'operator' });
  });

  it('puts the roles where AUTH_ROLE_CLAIM says, and the API reads them there', async () => {
    const env = {
      AUTH_LOCAL_KEY_DIR: tempDir(),
      AUTH_ROLE_CLAIM: 'realm_access.roles',
      AUTH_OPERATOR_ROLE: 'acme-ops',
    };
    const { stdout } = await run(['--operator', 'alice'], env);
    expect(decodeJwt(stdout.trim())).toMatchObject({ sub: 'alice', realm_access: { roles: ['acme-ops'] } });
    expect(await (await createAuthenticator(loadConfig(env)))(stdout.trim())).toEqual({
      kind: 'operator',
      subject: 'alice',
    });
  });

  it('refuses what is not a customer id, and says why (exit 2)', async () => {
    const env = { AUTH_LOCAL_KEY_DIR: tempDir() };
    for (const argv of [['has space'], [], ['C1', 'C2'], ['--frobnicate']]) {
      const res = await run(argv, env);
      expect(res.code, argv.join(' ')).toBe(2);
      expect(res.stdout).toBe('');
      expect(res.stderr).not.toBe('');
    }
  });

  it('sends you to the provider when an OIDC provider is configured', async () => {
    const res = await run(['C1'], { AUTH_JWKS_URL: 'https://idp.example/jwks' });
    expect(res).toMatchObject({
      code: 2,
      stdout: '',
      stderr: expect.stringContaining('https://idp.example/jwks'),
    });
  });
});

describe('roles at a claim path', () => {
  it.each([
    [{ roles: ['operator', 'x'] }, 'roles', ['operator', 'x']],
    [{ roles: 'operator customer' }, 'roles', ['operator', 'customer']],
    [{ realm_access: { roles: ['operator'] } }, 'realm_access.roles', ['operator']],
    [{ realm_access: 'operator' }, 'realm_access.roles', []],
    [{ roles: [1, 'operator', null] }, 'roles', ['operator']],
    [{}, 'roles', []],
    [{ 'https://acme.example/roles': ['operator'] }, 'https://acme.example/roles', ['operator']],
    [{ realm_access: {} }, 'realm_access.constructor', []],
  ])('%j at %s', (payload, claim, roles) => {
    expect(rolesOf(payload, claim)).toEqual(roles);
  });
});

describe('with an OIDC provider (JWKS over HTTP)', () => {
  let server: Server;
  let url: string;
  let requests = 0;
  const provider = generateLocalKeyPair();

  beforeAll(async () => {
    const { jwks } = await provider;
    server = createServer((_req, res) => {
      requests += 1;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(jwks));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const oidc = (jwksUrl: string) =>
    loadConfig({
      AUTH_JWKS_URL: jwksUrl,
      AUTH_ISSUER: 'https://idp.example/',
      AUTH_AUDIENCE: 'acme',
      AUTH_ROLE_CLAIM: 'realm_access.roles',
    });

  it("accepts the provider's tokens, fetching its key set once, and refuses the local key's", async () => {
    const config = oidc(url);
    const authenticate = await createAuthenticator(config);
    const token = await signLocalToken(await provider, config, { subject: 'C42', role: 'customer' });
    expect(await authenticate(token)).toEqual({ kind: 'customer', subject: 'C42', customerId: 'C42' });
    expect(await authenticate(token)).toMatchObject({ kind: 'customer' });
    expect(requests).toBe(1);
    const other = await signLocalToken(await generateLocalKeyPair(), config, {
      subject: 'C42',
      role: 'operator',
    });
    await expect(authenticate(other)).rejects.toMatchObject({ status: 401, code: 'invalid_token' });
  });

  it('finds the customer id in a claim of its own when the provider’s sub is not one (Auth0)', async () => {
    const claim = 'https://acme.example/customer_id'; // a namespaced claim: its dots are not a path
    const sign = async (claims: Record<string, unknown>) =>
      new SignJWT({ realm_access: { roles: ['customer'] }, ...claims })
        .setProtectedHeader({ alg: 'ES256', kid: (await provider).privateJwk.kid! })
        .setIssuer('https://idp.example/')
        .setAudience('acme')
        .setSubject('auth0|5f7c8ec7c33c6c004bbafe82')
        .setExpirationTime('5m')
        .sign(await importJWK((await provider).privateJwk, 'ES256'));
    const token = await sign({ [claim]: 'C42' });

    const bySub = await createAuthenticator(oidc(url));
    await expect(bySub(token)).rejects.toMatchObject({
      status: 403,
      message: expect.stringContaining('"sub" claim is not a customer id'),
    });
    const byClaim = await createAuthenticator({ ...oidc(url), AUTH_CUSTOMER_CLAIM: claim });
    expect(await byClaim(token)).toEqual({
      kind: 'customer',
      subject: 'auth0|5f7c8ec7c33c6c004bbafe82',
      customerId: 'C42',
    });
    await expect(byClaim(await sign({ [claim]: 'C 42' }))).rejects.toMatchObject({ status: 403 });
    await expect(byClaim(await sign({}))).rejects.toMatchObject({ status: 403 });
  });

  it('refuses a signed token whose sub is not a string (it would name its caller "[object Object]")', async () => {
    const authenticate = await createAuthenticator(oidc(url));
    // An operator token, the kind whose subject is only a name (in keys and logs), never checked else.
    const withSub = async (sub: unknown) =>
      new SignJWT({ realm_access: { roles: ['operator'] }, sub: sub as string }) // whatever the issuer put there
        .setProtectedHeader({ alg: 'ES256', kid: (await provider).privateJwk.kid! })
        .setIssuer('https://idp.example/')
        .setAudience('acme')
        .setExpirationTime('5m')
        .sign(await importJWK((await provider).privateJwk, 'ES256'));
    expect(await authenticate(await withSub('ops-1'))).toEqual({ kind: 'operator', subject: 'ops-1' });
    for (const sub of [123, { id: 1 }, ['a', 'b'], '', 'x'.repeat(256)]) {
      await expect(authenticate(await withSub(sub)), JSON.stringify(sub)).rejects.toMatchObject({
        status: 401,
        code: 'invalid_token',
        message: expect.stringContaining('"sub" claim'),
      });
    }
  });

  it('with AUTH_TOKEN_TYPE, refuses an ID token of the same audience and accepts the typed access token', async () => {
    const sign = async (typ: string | undefined) =>
      new SignJWT({ realm_access: { roles: ['customer'] } })
        .setProtectedHeader({ alg: 'ES256', kid: (await provider).privateJwk.kid!, ...(typ ? { typ } : {}) })
        .setIssuer('https://idp.example/')
        .setAudience('acme')
        .setSubject('C42')
        .setExpirationTime('5m')
        .sign(await importJWK((await provider).privateJwk, 'ES256'));
    const typed = await createAuthenticator({ ...oidc(url), AUTH_TOKEN_TYPE: 'at+jwt' });
    expect(await typed(await sign('at+jwt'))).toMatchObject({ kind: 'customer', customerId: 'C42' });
    expect(await typed(await sign('application/at+jwt'))).toMatchObject({ kind: 'customer' }); // RFC 7515's long form
    for (const idToken of [await sign('JWT'), await sign(undefined)]) {
      await expect(typed(idToken)).rejects.toMatchObject({
        status: 401,
        code: 'invalid_token',
        message: expect.stringContaining('"typ"'),
      });
    }
    // Unset (the default), the header is not looked at.
    expect(await (await createAuthenticator(oidc(url)))(await sign('JWT'))).toMatchObject({
      kind: 'customer',
    });
  });

  it('local tokens carry AUTH_TOKEN_TYPE when it is set, so the local API accepts them', async () => {
    const pair = await generateLocalKeyPair();
    const config = loadConfig({ AUTH_TOKEN_TYPE: 'at+jwt' });
    const token = await signLocalToken(pair, config, { subject: 'C42', role: 'customer' });
    expect(decodeProtectedHeader(token).typ).toBe('at+jwt');
    expect(await localAuthenticator(pair, config)(token)).toMatchObject({
      kind: 'customer',
      customerId: 'C42',
    });
  });

  it('is a 503, not a 401, when the provider cannot be reached', async () => {
    const config = oidc('http://127.0.0.1:9/jwks.json'); // discard port: nothing listens
    const authenticate = await createAuthenticator(config);
    const token = await signLocalToken(await provider, config, { subject: 'C42', role: 'customer' });
    const err = await authenticate(token).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 503, code: 'auth_unavailable' });
  });
});

describe('the OpenAPI document', () => {
  it('declares the bearer scheme for every route but the probes', async () => {
    const app = createApp({
      pool: {} as Pool,
      logger: createLogger('auth-test', 'silent'),
      workflows: {} as never,
      config: {
        TEMPORAL_UI_URL: 'http://localhost:8233',
        TEMPORAL_NAMESPACE: 'default',
        IDEMPOTENCY_KEY_RETENTION_HOURS: 24,
        EVENT_MAX_AMOUNT: 10_000_000,
      },
      checks: {},
      authenticator: () => Promise.reject(new Error('not used')),
    });
    const doc = (await (await app.request('/openapi.json')).json()) as {
      security: unknown;
      components: { securitySchemes: Record<string, unknown> };
      paths: Record<string, Record<string, { security?: unknown; responses: Record<string, unknown> }>>;
    };
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({
      type: 'http',
      scheme: 'bearer',
      bearerFormat: 'JWT',
    });
    expect(doc.security).toEqual([{ bearerAuth: [] }]);
    expect(doc.paths['/health']!.get!.security).toEqual([]);
    expect(doc.paths['/ready']!.get!.security).toEqual([]);
    for (const [route, method] of [
      ['/orders', 'post'],
      ['/orders', 'get'],
      ['/orders/{id}', 'get'],
      ['/orders/{id}/cancel', 'post'],
      ['/orders/{id}/retry', 'post'],
      ['/products', 'get'],
      ['/analytics/summary', 'get'],
    ] as const) {
      const op = doc.paths[route]![method]!;
      expect(op.security, `${method} ${route}`).toEqual([{ bearerAuth: [] }]);
      expect(Object.keys(op.responses), `${method} ${route}`).toEqual(expect.arrayContaining(['401', '403']));
    }
    expect(Object.keys(doc.paths['/orders']!.post!.responses)).toContain('429');
  });
});
