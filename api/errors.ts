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

export interface FieldError {
  path: string;
  message: string;
}

export interface ErrorBody {
  error: {
    code: string;
    message: string;
    fields?: FieldError[];
    [detail: string]: unknown;
  };
}

export class ApiError extends HTTPException {
  override name = 'ApiError';
  readonly code: string;
  readonly fields: FieldError[] | undefined;
  readonly details: Record<string, unknown>;

  constructor(
    status: ContentfulStatusCode,
    code: string,
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
export function codeForStatus(status: number): string {
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
