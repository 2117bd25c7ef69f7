/**
 * Every `npm run orders -- …` command line the README shows parses: the subcommand and each flag
 * exist, each value is one its parser takes (a duration with its unit, a concurrency in range), and
 * the required flags are there. An operator copies these lines during an incident; one that ends in
 * a usage error is the README lying at the worst moment. Nothing runs: the command's context is a
 * stub that stops it as soon as it is reached.
 */
import { readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../cli/program.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const REACHED = 'reached the command: its line parsed';

/** The README's orders command lines, as typed after `--` (comments, pipes and prompts cut off). */
function readmeCommands(): string[] {
  const lines = new Set<string>();
  for (const match of README.matchAll(/npm run (?:-s )?orders -- ([^`\n]+)/g)) {
    const line = match[1]!
      .replace(/\s+#.*$/, '') // a shell comment after the command
      .replace(/\s*\|.*$/, '') // piped into jq
      .trim();
    // The synopsis (`<command> --help`) and elisions (`retry …`) are not lines to copy.
    if (line === '' || line.includes('<command>') || /(^| )…( |$)/.test(line.replace(/"…"/g, '"x"')))
      continue;
    lines.add(line);
  }
  return [...lines];
}

/** Shell words: whitespace-separated, '…' and "…" quoted. */
function words(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
}

/** Placeholders as an operator fills them in. */
const filledIn = (word: string) =>
  /^<(id|id\.\.\.|order id)>$/.test(word) ? '3f0c2a4e-1111-4222-8333-444455556666' : word;

async function parse(argv: string[]): Promise<{ code: number; stderr: string }> {
  const stderr = new PassThrough();
  const chunks: Buffer[] = [];
  stderr.on('data', (chunk: Buffer) => chunks.push(chunk));
  const code = await runCli(argv, { stdout: new PassThrough(), stderr, stderrIsTTY: false }, () => {
    throw new Error(REACHED);
  });
  return { code, stderr: Buffer.concat(chunks).toString('utf8') };
}

describe("the README's orders command lines", () => {
  const commands = readmeCommands();

  it('are found (the extraction itself works)', () => {
    expect(commands.length).toBeGreaterThanOrEqual(12);
    expect(commands).toContain('reconcile --fix');
  });

  it.each(commands)('%s', async (line) => {
    const { code, stderr } = await parse(words(line).map(filledIn));
    expect(stderr).toContain(REACHED);
    expect(code).toBe(1); // the stub's stop, not a usage error (2)
  });
});
