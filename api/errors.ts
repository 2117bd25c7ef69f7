/**
 * The API's error vocabulary. Every refusal leaves as `{ "error": { "code", "message", ... } }`:
 * `code` is stable and machine-readable, `message` tells a person what to change, and `fields`
 * (validation only) names each offending input by path, e.g. `items[0].qty`.
 *
 * Expected errors are `ApiError`s (an `HTTPException`); anything else is a bug and becomes a plain
 * 500 in `app.ts`'s `onError`, with the details logged, never sent.
 */
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ZodError } from 'zod';

/**
 * Every `code` the API answers with, and what it means: the one list, which the OpenAPI document
 * publishes (ErrorSchema) and the type of every ApiError's code.
 */
export const ERROR_CODES = {
  validation_failed: '400: a field, query parameter or header is invalid; `fields` names each',
  malformed_json: '400: the body is not JSON (or not UTF-8)',
  bad_request: '400: the request could not be read',
  missing_token: '401: no bearer token',
  invalid_token: '401: the token is malformed, expired, not for this API, or not signed by a known key',
  forbidden: '403: the token may not do this (an operator-only route, a staff cancel code)',
  not_found: "404: no such route, or no such order (another customer's reads as none)",
  method_not_allowed: '405: the route exists, not with this method (`Allow` lists the ones it has)',
  idempotency_key_reused: '409: this Idempotency-Key was used for a different body',
  order_final: '409: the order has ended and can no longer be cancelled',
  cancel_rejected: '409: too late to cancel (paid, or already being undone)',
  cancel_unavailable: '409: the order is in progress but its workflow is not running; the request is kept',
  retry_refused: '409: the order may not be retried now; the message says why',
  conflict: '409: the request conflicts with the order as it stands',
  payload_too_large: '413: the body is over the size limit',
  unsupported_media_type: '415: the body is not `application/json` (or is encoded)',
  unknown_sku: '422: an item names a product that does not exist',
  mixed_currencies: '422: the items are priced in more than one currency',
  total_too_large: '422: the total is above what can be charged',
  unprocessable: '422: the request is well formed but cannot be carried out',
  rate_limited: '429: too many writes; `Retry-After` says when to try again',
  cancel_incomplete:
    '500: the cancel was accepted but giving back stock or money failed; an operator is needed',
  internal: '500: a fault on our side; the correlation id in the answer finds it in the logs',
  client_error: 'another 4xx',
  auth_unavailable: '503: the identity provider (its keys) cannot be reached; retry after `Retry-After`',
  workflow_unavailable: "503: the order's workflow did not answer in time; retrying is safe",
  unavailable: '503: a dependency (the database) is unavailable; retry after `Retry-After`',
} as const;
export type ErrorCode = keyof typeof ERROR_CODES;

export interface FieldError {
  path: string;
  message: string;
}

export interface ErrorBody {
  error: {
    code: ErrorCode;
    message: string;
    fields?: FieldError[];
    [detail: string]: unknown;
  };
}

export class ApiError extends HTTPException {
  override name = 'ApiError';
  readonly code: ErrorCode;
  readonly fields: FieldError[] | undefined;
  readonly details: Record<string, unknown>;

  constructor(
    status: ContentfulStatusCode,
    code: ErrorCode,
    message: string,
    extra: { fields?: FieldError[]; details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(status, { message, cause: extra.cause });
    this.code = code;
    this.fields = extra.fields;
    this.details = extra.details ?? {};
  }

  toBody(): ErrorBody {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...this.details,
        ...(this.fields ? { fields: this.fields } : {}),
      },
    };
  }
}

/** Where a validated value came from; decides how its paths are spelled for the client. */
export type InputTarget = 'json' | 'query' | 'param' | 'header' | 'form' | 'cookie';

/** `['items', 0, 'qty']` → `items[0].qty`; the empty path (the whole body) → `body`. */
export function formatPath(path: ReadonlyArray<PropertyKey>, target: InputTarget = 'json'): string {
  if (target === 'header') return path.map((key) => canonicalHeaderName(String(key))).join('.');
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out === '' ? (target === 'json' ? 'body' : target) : out;
}

/** `idempotency-key` → `Idempotency-Key` (validators see lower-cased header names). */
export function canonicalHeaderName(name: string): string {
  return name
    .split('-')
    .map((part) => (part ? part[0]!.toUpperCase() + part.slice(1) : part))
    .join('-');
}

/**
 * One entry per offending field, with its first problem (an empty string breaks both "not empty"
 * and the pattern; saying it once is enough). Each unknown key gets its own entry.
 */
export function zodFieldErrors(error: ZodError, target: InputTarget = 'json'): FieldError[] {
  const fields = new Map<string, FieldError>();
  const add = (path: string, message: string) => {
    if (!fields.has(path)) fields.set(path, { path, message });
  };
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) add(formatPath([...issue.path, key], target), 'unknown field');
    } else {
      add(formatPath(issue.path, target), issue.message);
    }
  }
  return [...fields.values()];
}

/**
 * At most this many fields are named in one error: a body or query of thousands of unknown keys
 * would otherwise get an answer several times its own size.
 */
export const MAX_FIELDS_NAMED = 20;

export function validationError(error: ZodError, target: InputTarget): ApiError {
  const all = zodFieldErrors(error, target);
  const fields = all.slice(0, MAX_FIELDS_NAMED);
  const more = all.length - fields.length;
  const where = target === 'json' ? 'request body' : target === 'param' ? 'path' : target;
  const names = fields.map((f) => f.path).join(', ') + (more > 0 ? ` and ${more} more` : '');
  return new ApiError(400, 'validation_failed', `Invalid ${where}: check ${names}.`, { fields });
}

export const notFound = (what: string, id: string): ApiError =>
  new ApiError(404, 'not_found', `${what} ${JSON.stringify(id)} does not exist.`);

/** Codes for HTTPExceptions thrown by Hono itself (e.g. its validator), which carry no code. */
export function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
      return 'bad_request';
    case 404:
      return 'not_found';
    case 405:
      return 'method_not_allowed';
    case 409:
      return 'conflict';
    case 413:
      return 'payload_too_large';
    case 415:
      return 'unsupported_media_type';
    case 422:
      return 'unprocessable';
    case 503:
      return 'unavailable';
    default:
      return status >= 500 ? 'internal' : 'client_error';
  }
}
