/**
 * What every command's action does around its operation: open the context, drive the progress bar,
 * print the result, and set the exit code; so a command module only parses its arguments and calls
 * its function in ops/.
 *
 * Exit codes: 0 when every selected item ended as asked (or nothing was selected), 1 when any was
 * refused or failed (each with its reason) or the command could not run (a server unreachable),
 * 2 for a usage error (bad arguments or configuration).
 */
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { ConfigError } from '../lib/config.js';
import { UsageError, type CommandResult, type Progress } from '../ops/result.js';
import { createCliContext, type CliContext } from './context.js';
import { printable } from '../domain/text.js';
import { formatHuman, formatJson, type ItemSummary } from './output.js';
import { progressBar } from './progress.js';

export const EXIT = { ok: 0, notOk: 1, usage: 2 } as const;

export interface CliIO {
  stdout: Writable;
  stderr: Writable;
  /** A person is watching stderr: worth drawing a progress bar there. */
  stderrIsTTY: boolean;
}

export interface GlobalOptions {
  json?: boolean;
  verbose?: boolean;
}

export type Operation = (ctx: CliContext, progress: Progress) => Promise<CommandResult>;

/** Adds one command (or a group, like `dlq`) to the program. */
export type RegisterCommand = (program: Command, runner: CommandRunner) => void;

export class CommandRunner {
  exitCode: number = EXIT.ok;

  constructor(
    private readonly io: CliIO,
    private readonly createContext: (opts: { verbose: boolean }) => CliContext = createCliContext,
  ) {}

  /** Runs `operation` for `command` (whose options and the global ones are already parsed). */
  async run(command: Command, operation: Operation, summarize?: ItemSummary): Promise<void> {
    const { json = false, verbose = false } = command.optsWithGlobals<GlobalOptions>();
    const name = commandPath(command);
    const bar = progressBar(name, { enabled: this.io.stderrIsTTY && !json });
    let ctx: CliContext | undefined;
    try {
      ctx = this.createContext({ verbose });
      const result = await operation(ctx, bar);
      bar.stop();
      this.io.stdout.write(json ? formatJson(result) : formatHuman(result, summarize));
      this.exitCode = result.ok ? EXIT.ok : EXIT.notOk;
    } catch (err) {
      bar.stop();
      const usage = err instanceof UsageError || err instanceof ConfigError;
      const detail =
        verbose && !usage && err instanceof Error && err.stack
          ? err.stack
          : String((err as Error).message ?? err);
      // An error may quote what a dead letter carried: each line printable, the lines kept.
      this.io.stderr.write(
        `error: ${detail.split('\n').map(printable).join('\n')}\n${usage ? `(see: npm run orders -- ${name} --help)\n` : ''}`,
      );
      this.exitCode = usage ? EXIT.usage : EXIT.notOk;
    } finally {
      await ctx?.close();
    }
  }
}

/** `dlq redrive` for the redrive subcommand of dlq: the words typed after `orders`. */
function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}
