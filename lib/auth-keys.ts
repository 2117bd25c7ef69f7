/**
 * The local identity provider: one ES256 key pair kept under the git-ignored data folder, and the
 * tokens it signs. Used when no OIDC provider is configured (`AUTH_JWKS_URL` unset): `npm run up`
 * and the API create the key pair once, `npm run token` signs with it, the API verifies with its
 * public half. With an OIDC provider none of this runs; its JWKS is the only key source.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import type { Config } from './config.js';

export const LOCAL_ALGORITHM = 'ES256';
/** Local tokens last a working day: long enough to paste once, short enough not to linger. */
export const LOCAL_TOKEN_TTL_SECONDS = 24 * 3600;
export const LOCAL_KEY_FILE = 'local-signing-key.jwk.json';

export interface LocalKeyPair {
  /** The private JWK (with `kid`); never leaves this machine. */
  privateJwk: JWK;
  /** The public half, as a JWKS: what the API verifies against. */
  jwks: { keys: JWK[] };
}

export type AuthConfig = Pick<
  Config,
  'AUTH_ISSUER' | 'AUTH_AUDIENCE' | 'AUTH_ROLE_CLAIM' | 'AUTH_OPERATOR_ROLE' | 'AUTH_LOCAL_KEY_DIR'
> &
  Partial<Pick<Config, 'AUTH_CUSTOMER_CLAIM' | 'AUTH_TOKEN_TYPE'>>;

/** A fresh key pair in memory (tests; and the first step of `ensureLocalKeyPair`). */
export async function generateLocalKeyPair(): Promise<LocalKeyPair> {
  const { privateKey } = await generateKeyPair(LOCAL_ALGORITHM, { extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk);
  return toKeyPair({ ...jwk, kid, alg: LOCAL_ALGORITHM, use: 'sig' });
}

/**
 * The key pair in `dir`, created if there is none. Idempotent and safe to race: the file is
 * written under a temporary name and linked into place, so a second process that loses the race
 * reads the winner's key instead of overwriting it (tokens already handed out stay valid).
 */
export async function ensureLocalKeyPair(dir: string): Promise<LocalKeyPair> {
  const file = path.resolve(dir, LOCAL_KEY_FILE);
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const pair = await generateLocalKeyPair();
    const temp = `${file}.${process.pid}.${randomUUID()}.tmp`;
    writeFileSync(temp, `${JSON.stringify(pair.privateJwk, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    try {
      linkSync(temp, file);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
    } finally {
      unlinkSync(temp);
    }
  }
  return readLocalKeyPair(file);
}

function readLocalKeyPair(file: string): LocalKeyPair {
  let jwk: JWK;
  try {
    jwk = JSON.parse(readFileSync(file, 'utf8')) as JWK;
  } catch (err) {
    throw new Error(
      `Cannot read the local signing key ${file} (${String(err)}); delete it to make a new one.`,
      { cause: err },
    );
  }
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string') {
    throw new Error(`${file} is not an ES256 private key; delete it to make a new one.`);
  }
  return toKeyPair(jwk);
}

function toKeyPair(privateJwk: JWK): LocalKeyPair {
  const { d: _private, ...publicJwk } = privateJwk;
  return { privateJwk, jwks: { keys: [publicJwk] } };
}

export interface TokenRequest {
  /** `sub`: the customer id for a customer, any name for an operator. */
  subject: string;
  role: 'customer' | 'operator';
  ttlSeconds?: number;
}

/**
 * Signs a token the API accepts in local mode: `iss`, `aud`, `sub`, `exp`, and the roles at the
 * configured claim path (`roles`, or e.g. `realm_access.roles`).
 *
 * @example
 * const token = await signLocalToken(pair, config, { subject: 'C100', role: 'customer' });
 */
export async function signLocalToken(
  pair: LocalKeyPair,
  config: AuthConfig,
  req: TokenRequest,
): Promise<string> {
  const key = await importJWK(pair.privateJwk, LOCAL_ALGORITHM);
  const role = req.role === 'operator' ? config.AUTH_OPERATOR_ROLE : 'customer';
  // The subject is the customer id; a customer claim of another name carries it too.
  const customerClaim = config.AUTH_CUSTOMER_CLAIM ?? 'sub';
  const claims = {
    ...nestClaim(config.AUTH_ROLE_CLAIM, [role]),
    ...(customerClaim === 'sub' ? {} : { [customerClaim]: req.subject }),
  };
  return new SignJWT(claims)
    .setProtectedHeader({
      alg: LOCAL_ALGORITHM,
      // The type the API checks when AUTH_TOKEN_TYPE is set, so local tokens pass that check too.
      typ: config.AUTH_TOKEN_TYPE ?? 'JWT',
      ...(pair.privateJwk.kid ? { kid: pair.privateJwk.kid } : {}),
    })
    .setIssuer(config.AUTH_ISSUER)
    .setAudience(config.AUTH_AUDIENCE)
    .setSubject(req.subject)
    .setJti(randomUUID())
    .setIssuedAt()
    .setExpirationTime(`${req.ttlSeconds ?? LOCAL_TOKEN_TTL_SECONDS}s`)
    .sign(key);
}

/** `realm_access.roles`, value → `{ realm_access: { roles: value } }`. */
function nestClaim(claimPath: string, value: unknown): Record<string, unknown> {
  return claimPath.split('.').reduceRight<unknown>((inner, key) => ({ [key]: inner }), value) as Record<
    string,
    unknown
  >;
}
