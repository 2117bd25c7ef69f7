/**
 * Entry of the operator CLI: `npm run orders -- <command> …` (`npm run orders -- --help`).
 * The result goes to stdout, everything else to stderr; see cli/runner.ts for the exit codes.
 */
import { runCli } from './program.js';

async function main(): Promise<void> {
  process.exitCode = await runCli(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    stderrIsTTY: process.stderr.isTTY === true,
  });
}

main().catch((err: unknown) => {
  process.stderr.write(
    `orders: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
});
