/**
 * The API's HTTP server: listening, draining on stop, and the requests Node's own parser refuses
 * before the app sees them.
 */
import type { Duplex } from 'node:stream';
import { serve, type ServerType } from '@hono/node-server';
import type { Logger } from '../lib/logger.js';
import type { ErrorBody } from './errors.js';

export function listen(
  fetch: (request: Request) => Response | Promise<Response>,
  port: number,
): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, port }, () => {
      server.off('error', reject);
      resolve(server);
    });
    server.on('clientError', answerUnreadableRequest);
    server.once('error', reject); // e.g. EADDRINUSE: set PORT to a free port
  });
}

/** Stops accepting, lets in-flight requests finish for `drainTimeoutMs`, then cuts what is left. */
export async function close(server: ServerType, logger: Logger, drainTimeoutMs: number): Promise<void> {
  const timer = setTimeout(() => {
    logger.warn({ timeoutMs: drainTimeoutMs }, 'drain timed out; closing remaining connections');
    if ('closeAllConnections' in server) server.closeAllConnections();
  }, drainTimeoutMs);
  try {
    await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
  } finally {
    clearTimeout(timer);
  }
}

/** What Node's parser refused, in words for the client; its own message for the rest. */
const UNREADABLE: Record<string, { status: number; text: string; message: string }> = {
  HPE_INVALID_HEADER_TOKEN: {
    status: 400,
    text: 'Bad Request',
    message: 'a request header holds a character HTTP does not allow (a control character, say)',
  },
  HPE_HEADER_OVERFLOW: {
    status: 431,
    text: 'Request Header Fields Too Large',
    message: 'the request headers are too large',
  },
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, text: 'Request Timeout', message: 'the request took too long' },
};

/**
 * Node answers a request its parser refuses (a control character in a header, headers too large)
 * with a bare status and no body; this answers in the API's error format instead, so every refusal
 * reads the same. A connection already gone, or one whose answer to an earlier request has begun
 * (keep-alive), is just closed; any other is closed once the answer is written, as Node's own is,
 * whether or not the client closes its side.
 */
export function answerUnreadableRequest(err: Error & { code?: string }, socket: Duplex): void {
  const answering = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || answering?.headersSent) {
    socket.destroy();
    return;
  }
  const known = UNREADABLE[err.code ?? ''];
  const status = known?.status ?? 400;
  const body: ErrorBody = {
    error: {
      code: 'bad_request',
      message: `The request could not be read: ${known?.message ?? 'malformed HTTP'}.`,
    },
  };
  const json = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${known?.text ?? 'Bad Request'}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(json)}\r\n` +
      'Connection: close\r\n\r\n' +
      json,
    () => socket.destroy(),
  );
}
