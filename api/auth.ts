/**
 * Who is calling: bearer JWTs verified with `jose`, and the principal they make.
 *
 * Keys come from one of two places, chosen by the config: an OIDC provider's JWKS (`AUTH_JWKS_URL`,
 * fetched and cached by jose, refreshed when an unknown `kid` shows up) or the local key pair
 * (lib/auth-keys.ts). Either way only asymmetric algorithms are accepted, so neither `alg: none`
 * nor an HMAC token signed with the public key as its secret can get in, and every token must carry
 * the configured issuer and audience, a subject and an expiry.
 *
 * A token whose roles (at `AUTH_ROLE_CLAIM`) include `AUTH_OPERATOR_ROLE` is an operator's; any
 * other is a customer's, and its `sub` is the customer id.
 */
import type { MiddlewareHandler } from 'hono';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { Config } from '../lib/config.js';
import { ensureLocalKeyPair, type LocalKeyPair } from '../lib/auth-keys.js';
import { ApiError } from './errors.js';
import type { AppEnv } from './env.js';
import { CUSTOMER_ID } from '../domain/order.js'; // a customer's `sub` must have its shape

export type Principal =
  { kind: 'customer'; subject: string; customerId: string } | { kind: 'operator'; subject: string };

/** Turns a bearer token into a principal, or throws an `ApiError` (401, 403 or 503). */
export type Authenticator = (token: string) => Promise<Principal>;

export type VerifierConfig = Pick<
  Config,
  | 'AUTH_ISSUER'
  | 'AUTH_AUDIENCE'
  | 'AUTH_ROLE_CLAIM'
  | 'AUTH_OPERATOR_ROLE'
  | 'AUTH_CUSTOMER_CLAIM'
  | 'AUTH_CLOCK_TOLERANCE_S'
  | 'AUTH_TOKEN_TYPE'
>;

/** Asymmetric only: a symmetric (HS*) or unsigned (`none`) token is refused before any key is tried. */
export const ACCEPTED_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
];

/** RFC 6750 b64token; longer than any real token is refused unparsed. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
const MAX_TOKEN_LENGTH = 8192;

/** The authenticator for this process: the OIDC provider's JWKS, or the local key pair. */
export async function createAuthenticator(
  config: VerifierConfig & Pick<Config, 'AUTH_JWKS_URL' | 'AUTH_LOCAL_KEY_DIR'>,
): Promise<Authenticator> {
  if (config.AUTH_JWKS_URL !== undefined) {
    const jwks = createRemoteJWKSet(new URL(config.AUTH_JWKS_URL), {
      timeoutDuration: 5_000,
      cooldownDuration: 30_000,
      cacheMaxAge: 10 * 60_000,
    });
    return authenticatorFor(jwks, config);
  }
  return localAuthenticator(await ensureLocalKeyPair(config.AUTH_LOCAL_KEY_DIR), config);
}

export function localAuthenticator(pair: LocalKeyPair, config: VerifierConfig): Authenticator {
  return authenticatorFor(createLocalJWKSet(pair.jwks), config);
}

/** A token's subject names its caller in keys and logs; identity providers' ids are far shorter. */
const MAX_SUBJECT_LENGTH = 255;

function authenticatorFor(keys: JWTVerifyGetKey, config: VerifierConfig): Authenticator {
  return async function authenticate(token) {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: config.AUTH_ISSUER,
        audience: config.AUTH_AUDIENCE,
        algorithms: ACCEPTED_ALGORITHMS,
        clockTolerance: config.AUTH_CLOCK_TOLERANCE_S,
        requiredClaims: ['sub', 'exp'],
        ...(config.AUTH_TOKEN_TYPE !== undefined ? { typ: config.AUTH_TOKEN_TYPE } : {}),
      }));
    } catch (err) {
      throw tokenError(err);
    }
    // `requiredClaims` checks that `sub` is there, not what it is: a number, an object or "" would
    // become the caller's key ("operator:[object Object]"), shared by every such caller.
    const subject = payload.sub;
    if (typeof subject !== 'string' || subject === '' || subject.length > MAX_SUBJECT_LENGTH) {
      throw new ApiError(
        401,
        'invalid_token',
        `The bearer token was refused: its "sub" claim must be a string of 1 to ${MAX_SUBJECT_LENGTH} characters.`,
      );
    }
    if (rolesOf(payload, config.AUTH_ROLE_CLAIM).includes(config.AUTH_OPERATOR_ROLE)) {
      return { kind: 'operator', subject };
    }
    const customerId = claimAt(payload, config.AUTH_CUSTOMER_CLAIM);
    if (typeof customerId !== 'string' || !CUSTOMER_ID.test(customerId)) {
      throw new ApiError(
        403,
        'forbidden',
        `The token is valid, but its "${config.AUTH_CUSTOMER_CLAIM}" claim is not a customer id (letters, digits and . _ : -, at most 64) and it carries no operator role.`,
      );
    }
    return { kind: 'customer', subject, customerId };
  };
}

/** The roles at a claim name or dotted path: a string, an array of strings, or nothing. */
export function rolesOf(payload: JWTPayload, claimPath: string): string[] {
  const value = claimAt(payload, claimPath);
  if (typeof value === 'string') return value.split(' ').filter(Boolean);
  if (Array.isArray(value)) return value.filter((role): role is string => typeof role === 'string');
  return [];
}

/**
 * A claim by its name, which may hold dots (namespaced claims such as Auth0's
 * `https://acme.example/roles`), or else by a dotted path into nested claims (`realm_access.roles`).
 */
export function claimAt(payload: JWTPayload, claimPath: string): unknown {
  if (Object.hasOwn(payload, claimPath)) return payload[claimPath];
  let value: unknown = payload;
  for (const key of claimPath.split('.')) {
    value =
      value !== null && typeof value === 'object' && Object.hasOwn(value, key)
        ? (value as Record<string, unknown>)[key]
        : undefined;
  }
  return value;
}

/** jose's verdict as the client's 401, or a 503 when the key set itself could not be fetched. */
function tokenError(err: unknown): ApiError {
  const invalid = (why: string) =>
    new ApiError(401, 'invalid_token', `The bearer token was refused: ${why}.`);
  if (err instanceof errors.JWTExpired) return invalid('it has expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    return invalid(`its "${err.claim}" claim is not accepted here (${err.reason.replaceAll('_', ' ')})`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return invalid('its algorithm is not accepted');
  if (err instanceof errors.JWSSignatureVerificationFailed) return invalid('its signature does not verify');
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    return invalid('it was not signed by a key this API trusts');
  }
  if (
    err instanceof errors.JWKSTimeout ||
    err instanceof errors.JWKSInvalid ||
    !(err instanceof errors.JOSEError)
  ) {
    // The identity provider did not answer (or answered nonsense): our outage, not the caller's fault.
    return new ApiError(
      503,
      'auth_unavailable',
      'The identity provider could not be reached to check the token; retry shortly.',
      {
        cause: err,
      },
    );
  }
  return invalid('it is not a well-formed signed JWT');
}

/**
 * Requires a valid bearer token and sets `c.var.principal`; otherwise a 401 JSON error with a
 * `WWW-Authenticate` challenge (RFC 6750 §3).
 *
 * @example
 * app.use('/orders/*', authenticate({ authenticator }));
 */
export function authenticate({ authenticator }: { authenticator: Authenticator }): MiddlewareHandler<AppEnv> {
  return async function authenticateMiddleware(c, next) {
    const header = c.req.header('authorization');
    const match = header === undefined ? null : BEARER.exec(header);
    let principal: Principal;
    try {
      if (header === undefined || header === '') {
        throw new ApiError(
          401,
          'missing_token',
          'Send "Authorization: Bearer <token>" (npm run -s token -- <customer-id>).',
        );
      }
      if (!match || match[1]!.length > MAX_TOKEN_LENGTH) {
        throw new ApiError(
          401,
          'invalid_token',
          'The Authorization header must be "Bearer <token>" with one JWT.',
        );
      }
      principal = await authenticator(match[1]!);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        const description = err.code === 'missing_token' ? '' : `, error="invalid_token"`;
        c.header('WWW-Authenticate', `Bearer realm="acme-orders"${description}`);
      }
      throw err;
    }
    c.set('principal', principal);
    c.set('log', c.var.log.child({ caller: callerKey(principal) }));
    await next();
  };
}

/** One string per caller: the rate limiter's key and what cursors are bound to. */
export function callerKey(principal: Principal): string {
  return `${principal.kind}:${principal.subject}`;
}

/** The customer a principal is confined to; undefined for an operator (who sees everything). */
export function customerScope(principal: Principal): string | undefined {
  return principal.kind === 'customer' ? principal.customerId : undefined;
}

export function requireOperator(principal: Principal, action: string): void {
  if (principal.kind !== 'operator') {
    throw new ApiError(403, 'forbidden', `Only an operator may ${action}.`);
  }
}

/**
 * An operators-only route's first middleware: a customer is refused (403) before the route reads or
 * validates anything, so a customer learns nothing about what the route would accept.
 *
 * @example
 * createRoute({ ..., middleware: [operatorsOnly('retry an order'), jsonBody({ maxBytes })] });
 */
export function operatorsOnly(action: string): MiddlewareHandler<AppEnv> {
  return async function operatorsOnlyMiddleware(c, next) {
    requireOperator(c.var.principal, action);
    await next();
  };
}
