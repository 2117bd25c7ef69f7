/**
 * What every entry point (api, outbox, bridge, worker, loyalty, analytics) does the same way: drain on the
 * first SIGINT/SIGTERM, exit at once on the second, and turn a failed `main()` into exit code 1.
 */
import { ConfigError } from './config.js';
import { createLogger } from './logger.js';

/**
 * A second signal within this long of the first is the same stop, not an impatient user: Ctrl-C
 * reaches every process of the terminal's group, and `npm run up`'s runner forwards one more.
 */
const SAME_STOP_MS = 1000;

/** Resolves with the first SIGINT/SIGTERM; a later second signal while draining exits at once. */
export function waitForShutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let firstAt: number | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      if (firstAt === undefined) {
        firstAt = Date.now();
        resolve(signal);
      } else if (Date.now() - firstAt > SAME_STOP_MS) {
        process.exit(1);
      }
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
