/**
 * Tokens for tests: one in-memory ES256 key pair per test process (nothing on disk), the app's
 * authenticator over it, and tokens of every kind, good and bad, signed the way the local identity
 * provider signs them (lib/auth-keys.ts).
 */
import { SignJWT, UnsecuredJWT, importJWK } from 'jose';
import { localAuthenticator, type Authenticator } from '../../api/auth.js';
import { generateLocalKeyPair, signLocalToken, type LocalKeyPair } from '../../lib/auth-keys.js';
import { loadConfig, type Config } from '../../lib/config.js';

export interface TestAuth {
  config: Config;
  pair: LocalKeyPair;
  authenticator: Authenticator;
  customerToken(customerId: string): Promise<string>;
  operatorToken(name?: string): Promise<string>;
  /** Signed by this key pair with any claims and header: expired, foreign issuer, HS256, … */
  signed(
    claims: Record<string, unknown>,
    options?: { expiresIn?: string | number; header?: Record<string, unknown>; pair?: LocalKeyPair },
  ): Promise<string>;
  /** An unsigned token (`alg: none`) with the claims of a valid customer token. */
  unsigned(customerId: string): string;
}

let shared: Promise<TestAuth> | undefined;

/** The test process's key pair and authenticator (made once, reused by every app in the process). */
export function testAuth(): Promise<TestAuth> {
  shared ??= makeTestAuth();
  return shared;
}

async function makeTestAuth(): Promise<TestAuth> {
  // The defaults (issuer, audience, role claim), never the environment's: tests sign what they verify.
  const config = loadConfig({});
  const pair = await generateLocalKeyPair();
  const base = (customerId: string) => ({
    iss: config.AUTH_ISSUER,
    aud: config.AUTH_AUDIENCE,
    sub: customerId,
    [config.AUTH_ROLE_CLAIM]: ['customer'],
  });
  return {
    config,
    pair,
    authenticator: localAuthenticator(pair, config),
    customerToken: (customerId) => signLocalToken(pair, config, { subject: customerId, role: 'customer' }),
    operatorToken: (name = 'test-operator') =>
      signLocalToken(pair, config, { subject: name, role: 'operator' }),
    async signed(claims, { expiresIn = '1h', header = {}, pair: signer = pair } = {}) {
      const key = await importJWK(signer.privateJwk, 'ES256');
      const jwt = new SignJWT({ iss: config.AUTH_ISSUER, aud: config.AUTH_AUDIENCE, ...claims })
        .setProtectedHeader({ alg: 'ES256', kid: signer.privateJwk.kid, ...header })
        .setIssuedAt();
      if (expiresIn !== '') jwt.setExpirationTime(expiresIn);
      return jwt.sign(key);
    },
    unsigned: (customerId) =>
      new UnsecuredJWT(base(customerId)).setIssuedAt().setExpirationTime('1h').encode(),
  };
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Anything with Hono's `request` (an app). */
interface Requestable {
  request(input: string, init?: RequestInit): Response | Promise<Response>;
}

/**
 * The app as one caller sees it: every request carries `Authorization: Bearer <token>` (unless the
 * request sets its own), so tests about something else read as before.
 *
 * @example
 * const ops = asCaller(app, await (await testAuth()).operatorToken());
 * await ops.request('/orders?limit=5');
 */
export function asCaller<A extends Requestable>(app: A, token: string): A {
  const request = (input: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    if (!headers.has('authorization')) headers.set('authorization', `Bearer ${token}`);
    return app.request(input, { ...init, headers });
  };
  return new Proxy(app, {
    get: (target, prop, receiver) => (prop === 'request' ? request : Reflect.get(target, prop, receiver)),
  });
}
