/**
 * api/server.ts: a request Node's parser refuses before the app sees it is answered in the API's
 * error format, not with a bare status and no body.
 */
import { connect, type AddressInfo } from 'node:net';
import type { ServerType } from '@hono/node-server';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { close, listen } from '../../api/server.js';
import { createLogger } from '../../lib/logger.js';

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

test('a well-formed request still reaches the app', async () => {
  const answer = await raw('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  expect(answer.status).toBe(200);
});
