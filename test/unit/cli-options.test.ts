/**
 * The CLI's option parsers: a value out of range is a usage error naming the flag (exit 2), never a
 * database error from a number PostgreSQL cannot hold (a limit past `bigint`, an interval past its
 * range) reported as a failed item.
 */
import { PassThrough } from 'node:stream';
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { concurrency, duration, positiveInt } from '../../cli/options.js';
import { MAX_CONCURRENCY } from '../../ops/batch.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { flagsTakenByNpm, runCli } from '../../cli/program.js';

async function run(argv: string[]): Promise<{ code: number; stderr: string }> {
  const stderr = new PassThrough();
  const chunks: Buffer[] = [];
  stderr.on('data', (chunk: Buffer) => chunks.push(chunk));
  const code = await runCli(argv, { stdout: new PassThrough(), stderr, stderrIsTTY: false }, () => {
    throw new Error('no command should run');
  });
  return { code, stderr: Buffer.concat(chunks).toString('utf8') };
}

describe('option parsers', () => {
  it('positiveInt: 1 up to 2^31-1', () => {
    expect(positiveInt('1')).toBe(1);
    expect(positiveInt('2147483647')).toBe(2_147_483_647);
    for (const bad of ['0', '-1', '1.5', 'x', '1e20', '2147483648'])
      expect(() => positiveInt(bad)).toThrow(InvalidArgumentError);
  });

  it('concurrency: at most the CLI pool’s connections, so no lane waits for one', () => {
    expect(concurrency('1')).toBe(1);
    expect(concurrency(String(MAX_CONCURRENCY))).toBe(MAX_CONCURRENCY);
    for (const bad of ['0', 'abc', String(MAX_CONCURRENCY + 1), '1e9'])
      expect(() => concurrency(bad)).toThrow(`give a whole number from 1 to ${MAX_CONCURRENCY}`);
  });

  it('duration: units, and at most ten years', () => {
    expect(duration('90s')).toBe(90_000);
    expect(duration('3650d')).toBe(3650 * 86_400_000);
    expect(duration('500ms')).toBe(500);
    expect(duration('0')).toBe(0);
    for (const bad of ['3651d', '99999999999999999999999999999d', '5 minutes', ''])
      expect(() => duration(bad)).toThrow(InvalidArgumentError);
    // A bare number could mean any unit: refused, naming how to write it.
    expect(() => duration('5')).toThrow('give a duration with its unit, such as 500ms, 30s');
  });

  it('an out-of-range flag is a usage error naming it (exit 2), before anything runs', async () => {
    for (const argv of [
      ['reconcile', '--limit', '1e20'],
      ['reconcile', '--older-than', '99999999999999999999999999999d'],
      ['settle', '00000000-0000-4000-8000-000000000001', '--reason', 'x', '--wait', '4000d'],
    ]) {
      const { code, stderr } = await run(argv);
      expect(code, argv.join(' ')).toBe(2);
      expect(stderr).toMatch(/option '--(limit|older-than|wait) <[a-z ]+>' argument/);
    }
  });
});

describe('usage errors', () => {
  it('quote what was typed with its control characters escaped: an argument cannot drive the terminal', async () => {
    // An OSC title change, a BEL and a clear-screen CSI, as a value and as a command name.
    for (const argv of [
      ['dlq', 'show', '--limit', '\u001b]0;pwned\u0007\u001b[2J'],
      ['\u001b[31mretyr\u009b2J'],
    ]) {
      const { code, stderr } = await run(argv);
      expect(code).toBe(2);
      // eslint-disable-next-line no-control-regex -- no control character but the line breaks may remain
      expect(stderr).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
      expect(stderr).toContain('\\u001b');
    }
  });
});

describe('flags npm took for itself (no `--` after npm run orders)', () => {
  it("names each of the CLI's flags npm set as npm_config_*, only under the orders script", () => {
    const npm = { npm_lifecycle_event: 'orders', npm_config_cache: '/root/.npm' };
    expect(flagsTakenByNpm(npm)).toEqual([]);
    expect(flagsTakenByNpm({ ...npm, npm_config_dry_run: 'true', npm_config_reason: 'x' }).sort()).toEqual([
      '--dry-run',
      '--reason',
    ]);
    expect(flagsTakenByNpm({ ...npm, npm_config_forgotten_run: 'true' })).toEqual(['--forgotten-run']);
    expect(flagsTakenByNpm({ npm_lifecycle_event: 'test', npm_config_dry_run: 'true' })).toEqual([]);
    // npm's own settings from an .npmrc (save=false, json=false) are not flags anyone typed.
    expect(flagsTakenByNpm({ ...npm, npm_config_save: '', npm_config_json: 'false' })).toEqual([]);
  });

  it('the entry refuses such a command line (exit 2) before anything runs: a dry run never runs for real', async () => {
    const run = promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', 'cli/orders.ts', 'retry', '00000000-0000-4000-8000-000000000001'],
      // What `npm run orders retry <id> --dry-run` leaves the script: the flag gone from argv.
      { env: { ...process.env, npm_lifecycle_event: 'orders', npm_config_dry_run: 'true' } },
    );
    await expect(run).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('npm took --dry-run for itself'),
    });
  });
});
