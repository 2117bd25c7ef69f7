/**
 * `npm run orders -- --help` names every setting the operator CLI reads (cli/, ops/, lib/temporal.ts),
 * so an operator pointing it at their own servers learns from the help what to set.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../cli/program.js';

const ROOT = new URL('../../', import.meta.url);
const sources = [
  ...['cli/', 'cli/commands/', 'ops/'].flatMap((dir) =>
    readdirSync(new URL(dir, ROOT))
      .filter((name) => name.endsWith('.ts') && name !== 'token.ts') // `npm run token` is its own tool
      .map((name) => `${dir}${name}`),
  ),
  'lib/temporal.ts',
];

async function help(): Promise<string> {
  const stdout = new PassThrough();
  const chunks: Buffer[] = [];
  stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  await runCli(['--help'], { stdout, stderr: new PassThrough(), stderrIsTTY: false });
  return Buffer.concat(chunks).toString('utf8');
}

describe('orders --help', () => {
  it('names every setting the CLI reads', async () => {
    const read = new Set(
      sources.flatMap((file) =>
        [...readFileSync(new URL(file, ROOT), 'utf8').matchAll(/config\.([A-Z][A-Z0-9_]+)/g)].map(
          (m) => m[1]!,
        ),
      ),
    );
    expect(read.size).toBeGreaterThan(5);
    const text = (await help()).replace(/\s+/g, ' ');
    for (const key of read) {
      const family = key.startsWith('TEMPORAL_TLS_') ? 'TEMPORAL_TLS_*' : key;
      expect(text, key).toContain(family);
    }
  });
});
