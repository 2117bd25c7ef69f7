/**
 * The `orders` operator CLI: one commander program, one module per command under cli/commands/,
 * each a thin shell over a function in ops/ that tests call directly. A new command is a module in
 * each folder and one line in COMMANDS.
 */
import { Command, CommanderError } from 'commander';
import { registerDlq } from './commands/dlq.js';
import { registerEraseCustomer } from './commands/erase-customer.js';
import { registerReconcile } from './commands/reconcile.js';
import { registerReplay } from './commands/replay.js';
import { registerReset } from './commands/reset.js';
import { registerRetry } from './commands/retry.js';
import { registerSettle } from './commands/settle.js';
import { printable } from '../domain/text.js';
import { CommandRunner, EXIT, type CliIO, type RegisterCommand } from './runner.js';

export const COMMANDS: readonly RegisterCommand[] = [
  registerReplay,
  registerRetry,
  registerReset,
  registerSettle,
  registerDlq,
  registerReconcile,
  registerEraseCustomer,
];

export function buildProgram(runner: CommandRunner, io: CliIO): Command {
  const program = new Command('orders')
    .description('Operator commands for the order sagas (Temporal) and their queues (RabbitMQ)')
    .option('--json', 'print only the result, as JSON, on stdout (logs stay on stderr)')
    .option('-v, --verbose', 'log details (and stack traces) to stderr')
    // Set before the commands are added: subcommands copy these settings when created.
    .exitOverride()
    // Usage errors quote what was typed (`unknown command '…'`, an option's bad value), which may come
    // from another system's output: escaped as every other line this CLI prints.
    .configureOutput({
      writeOut: (text) => io.stdout.write(printableLines(text)),
      writeErr: (text) => io.stderr.write(printableLines(text)),
    })
    .showHelpAfterError('(add --help for usage)')
    .showSuggestionAfterError()
    .addHelpText(
      'after',
      '\nSettings come from the environment, as for the services (README, Configuration): TEMPORAL_ADDRESS,' +
        '\nTEMPORAL_NAMESPACE, TEMPORAL_UI_URL, TEMPORAL_TLS_* and TEMPORAL_API_KEY (a remote Temporal),' +
        "\nTEMPORAL_TASK_QUEUE (the worker's queue, where a settlement runs), BRIDGE_MAX_RUNNING_SAGAS (the" +
        "\nbridge's window: reconcile takes orders waiting behind a full one as queued)," +
        '\nDATABASE_URL, AMQP_URL, BRIDGE_QUEUE, LOYALTY_QUEUE, ANALYTICS_QUEUE, and who may send what' +
        '\n(AMQP_TRUSTED_PUBLISHERS, BRIDGE_AMQP_USER, LOYALTY_AMQP_USER, ANALYTICS_AMQP_USER: a dead' +
        '\nletter from anyone else is never redriven), and DLQ_REDRIVE_WINDOW_MS (no older dead letter is).' +
        '\nExit codes: 0 every item ended as asked, 1 something was refused or failed, 2 usage error.',
    );
  for (const register of COMMANDS) register(program, runner);
  return program;
}

/**
 * Parses `argv` (the words after `orders`), runs the command, and returns the exit code. Tests may
 * pass their own context (their queues, their Temporal client) instead of the environment's.
 */
export async function runCli(
  argv: readonly string[],
  io: CliIO,
  createContext?: ConstructorParameters<typeof CommandRunner>[1],
): Promise<number> {
  const runner = new CommandRunner(io, createContext);
  try {
    await buildProgram(runner, io).parseAsync([...argv], { from: 'user' });
  } catch (err) {
    // Commander has printed its message (unknown option, missing argument, …) or the help.
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    throw err;
  }
  return runner.exitCode;
}

/**
 * The CLI's own flags that npm took for itself: `npm run orders retry <id> --dry-run`, without the
 * `--` that hands the rest to the script, makes npm swallow `--dry-run` (it sets
 * `npm_config_dry_run`), and the command would then run for real. Any such flag in the environment
 * of the `orders` script means the command line was not what the operator typed: refuse it.
 */
export function flagsTakenByNpm(env: NodeJS.ProcessEnv): string[] {
  if (env.npm_lifecycle_event !== 'orders') return [];
  const longFlags = new Set<string>();
  const collect = (command: Command) => {
    for (const option of command.options) if (option.long) longFlags.add(option.long);
    command.commands.forEach(collect);
  };
  const io: CliIO = { stdout: process.stdout, stderr: process.stderr, stderrIsTTY: false }; // never run
  collect(buildProgram(new CommandRunner(io), io));
  // npm also exports its own settings (an .npmrc's `save=false` as npm_config_save=""): a flag typed
  // before `--` is "true", or the value npm took with it.
  const typed = (value: string | undefined) => value !== undefined && value !== '' && value !== 'false';
  return [...longFlags].filter((flag) =>
    typed(env[`npm_config_${flag.replace(/^--/, '').replaceAll('-', '_')}`]),
  );
}

/** `printable`, line by line: commander's text keeps its line breaks. */
const printableLines = (text: string): string => text.split('\n').map(printable).join('\n');
