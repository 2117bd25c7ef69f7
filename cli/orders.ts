/**
 * Entry of the operator CLI: `npm run orders -- <command> …` (`npm run orders -- --help`).
 * The result goes to stdout, everything else to stderr; see cli/runner.ts for the exit codes.
 */
import { EXIT } from './runner.js';
import { flagsTakenByNpm, runCli } from './program.js';

async function main(): Promise<void> {
  // Not configuration: what npm did with the command line (its npm_config_* for the flags it took).
  // eslint-disable-next-line no-restricted-syntax
  const taken = flagsTakenByNpm(process.env);
  if (taken.length > 0) {
    process.stderr.write(
      `orders: npm took ${taken.join(', ')} for itself (a flag before \`--\` goes to npm, not to the CLI), ` +
        'so the command line is not what you typed; nothing was done. Put `--` after `npm run orders`: ' +
        'npm run orders -- <command> … (npm run -s orders -- … for the result alone)\n',
    );
    process.exitCode = EXIT.usage;
    return;
  }
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
