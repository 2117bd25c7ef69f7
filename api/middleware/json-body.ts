import type { HonoRequest, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { ApiError } from '../errors.js';

export interface JsonBodyOptions {
  /** Largest body accepted, in bytes; larger is a 413 before anything is parsed. */
  maxBytes: number;
  /** When true, no body at all (or an empty one) counts as `{}`. Default false. */
  optional?: boolean;
}

// The same test @hono/zod-openapi's validator applies, so nothing passes here and fails there.
const JSON_CONTENT_TYPE = /^application\/([a-z-.]+\+)?json(;\s*[a-zA-Z0-9-]+=([^;]+))*$/i;

/**
 * Turns the ways a JSON body can be wrong into clear errors, before schema validation runs:
 * another content type, or a compressed body (any Content-Encoding but `identity`), is a 415, an
 * oversized body a 413, bytes that are not UTF-8 or unparsable JSON a 400 (`malformed_json`). Route
 * validators then see only well-formed JSON.
 *
 * @example
 * createRoute({ method: 'post', path: '/', middleware: [jsonBody({ maxBytes: 32_768 })], ... });
 */
export function jsonBody({ maxBytes, optional = false }: JsonBodyOptions): MiddlewareHandler {
  const limit = bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new ApiError(413, 'payload_too_large', `The request body exceeds ${maxBytes} bytes.`);
    },
  });
  return async function jsonBodyMiddleware(c, next) {
    const encoding = c.req.header('content-encoding')?.trim() ?? '';
    if (encoding !== '' && encoding.toLowerCase() !== 'identity') {
      // Not decoded here: taken as JSON, gzip's bytes would be a confusing 400, and a plain body
      // labelled gzip would be accepted as if it had been decoded (RFC 9110 §15.5.16).
      c.header('Accept-Encoding', 'identity');
      throw new ApiError(
        415,
        'unsupported_media_type',
        `Send the body uncompressed (got "Content-Encoding: ${encoding.slice(0, 50)}").`,
        { fields: [{ path: 'Content-Encoding', message: 'must be absent or identity' }] },
      );
    }
    const contentType = c.req.header('content-type');
    if (contentType === undefined || contentType === '') {
      if (optional && !hasBody(c.req.raw)) return next();
      throw unsupported(contentType);
    }
    if (!JSON_CONTENT_TYPE.test(contentType)) throw unsupported(contentType);
    return limit(c, async () => {
      const text = await utf8Text(c.req);
      if (text.trim() === '') {
        if (!optional)
          throw new ApiError(400, 'malformed_json', 'The request body is empty; send a JSON object.');
        // An empty optional body means "no options": hand the validator an empty object.
        c.req.raw = new Request(c.req.raw.url, {
          method: c.req.method,
          headers: c.req.raw.headers,
          body: '{}',
        });
        c.req.bodyCache = {};
      } else {
        try {
          JSON.parse(text);
        } catch {
          throw new ApiError(400, 'malformed_json', 'The request body is not valid JSON.');
        }
      }
      await next();
    });
  };
}

/**
 * The body as text, refusing bytes that are not UTF-8 (a lenient decoder would silently turn them
 * into U+FFFD, storing something the client never sent). The bytes stay cached on the request, so
 * the route validator's `c.req.json()` decodes the same, now known-good, bytes.
 */
async function utf8Text(req: HonoRequest): Promise<string> {
  const bytes = await req.arrayBuffer();
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new ApiError(400, 'malformed_json', 'The request body is not valid UTF-8.');
  }
  return text;
}

function unsupported(contentType: string | undefined): ApiError {
  return new ApiError(
    415,
    'unsupported_media_type',
    `Send the body as JSON with "Content-Type: application/json"${contentType ? ` (got "${contentType.slice(0, 100)}")` : ''}.`,
  );
}

/** HTTP/1.1 framing: a request carries a body only with a Content-Length or Transfer-Encoding. */
function hasBody(request: Request): boolean {
  if (!request.body) return false;
  if (request.headers.has('transfer-encoding')) return true;
  return Number(request.headers.get('content-length') ?? '0') > 0;
}
