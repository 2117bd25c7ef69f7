/**
 * What every entry point (api, outbox, bridge, worker, loyalty) does the same way: drain on the
 * first SIGINT/SIGTERM, exit at once on the second, and turn a failed `main()` into exit code 1.
 */
import { ConfigError } from './config.js';
import { createLogger } from './logger.js';

/** Resolves with the first SIGINT/SIGTERM; a second signal while draining exits at once. */
export function waitForShutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let draining = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (draining) process.exit(1);
      draining = true;
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** Runs `main`; logs a failure (a bad setting, an unreachable server at start-up) and exits 1. */
export function runMain(name: string, main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    // A bad setting is the user's to fix: say which, without a stack trace.
    if (err instanceof ConfigError) console.error(err.message);
    else createLogger(name).fatal({ err }, `${name} failed`);
    process.exit(1);
  });
}
