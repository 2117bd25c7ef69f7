/**
 * api/server.ts: a request Node's parser refuses before the app sees it is answered in the API's
 * error format, not with a bare status and no body.
 */
import { connect, type AddressInfo } from 'node:net';
import type { ServerType } from '@hono/node-server';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { close, listen } from '../../api/server.js';
import { createLogger } from '../../lib/logger.js';
import { waitUntil } from '../helpers/wait.js';

let server: ServerType;
let port: number;
beforeAll(async () => {
  server = await listen(() => new Response('ok'), 0);
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  await close(server, createLogger('test', 'silent'), 1_000);
});

/** Sends raw bytes and reads the whole answer (the server closes the connection). */
function raw(request: string): Promise<{ status: number; headers: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(request));
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('utf8')));
    socket.on('error', reject);
    socket.on('close', () => {
      const [head = '', body = ''] = answer.split('\r\n\r\n');
      resolve({ status: Number(head.split(' ')[1]), headers: head, body });
    });
  });
}

test('a control character in a header value is a 400 with a JSON error, not a bare status', async () => {
  const answer = await raw('GET /orders HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\x01b\r\n\r\n');
  expect(answer.status).toBe(400);
  expect(answer.headers).toMatch(/content-type: application\/json/i);
  expect(JSON.parse(answer.body)).toEqual({
    error: {
      code: 'bad_request',
      message:
        'The request could not be read: a request header holds a character HTTP does not allow (a control character, say).',
    },
  });
});

test('headers too large are a 431 with a JSON error', async () => {
  const answer = await raw(`GET /orders HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  expect(answer.status).toBe(431);
  expect(JSON.parse(answer.body)).toMatchObject({ error: { code: 'bad_request' } });
});

test('the connection is closed once the answer is written, though the client keeps its side open', async () => {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  const answer = await new Promise<string>((resolve, reject) => {
    let text = '';
    socket.on('connect', () => socket.write('GET /orders HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0001b\r\n\r\n'));
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    socket.on('end', () => resolve(text)); // the server's side ended; ours stays open
    socket.on('error', reject);
  });
  expect(answer).toMatch(/^HTTP\/1.1 400 /);
  // The server holds no connection for it (Node's own answer closes too): not until a timeout.
  await waitUntil(
    () => new Promise<number>((resolve) => server.getConnections((_err, count) => resolve(count))),
    (count) => count === 0,
    { what: 'the server to close the connection', timeoutMs: 2_000 },
  );
  socket.destroy();
});

test('a well-formed request still reaches the app', async () => {
  const answer = await raw('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  expect(answer.status).toBe(200);
});
