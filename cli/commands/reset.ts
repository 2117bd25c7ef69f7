/** `orders reset`: resets order sagas stuck on a failing workflow task (ops/reset.ts has the rules). */
import type { Command } from 'commander';
import { DEFAULT_CONCURRENCY } from '../../ops/batch.js';
import { resetOrders } from '../../ops/reset.js';
import { selectionFrom } from '../../ops/select.js';
import { concurrency } from '../options.js';
import type { RegisterCommand } from '../runner.js';

interface ResetFlags {
  query?: string;
  reason: string;
  closed?: boolean;
  healthy?: boolean;
  dryRun?: boolean;
  concurrency: number;
}

export const registerReset: RegisterCommand = (program, runner) => {
  program
    .command('reset')
    .summary('reset stuck order sagas, or failed compensations, so they run again')
    .description(
      "reset each order saga's current run to its last completed workflow task (after a bad deploy, once the " +
        'fix is deployed), or a run whose compensation failed to just before it, so it runs again; only open ' +
        'runs stuck on a failing workflow task unless --healthy / --closed',
    )
    .argument('[orderIds...]', 'order ids (or workflow ids order-<id>)')
    .option('--query <visibility query>', 'every current run matching this query')
    .requiredOption('--reason <text>', 'why, kept in the history: what broke and which deploy fixes it')
    .option('--closed', 'also reset closed runs (re-opens orders that looked finished)')
    .option('--healthy', 'also reset open runs that are not stuck')
    .option('--dry-run', 'show the reset point of each run, reset nothing')
    .option('--concurrency <n>', 'runs reset at once', concurrency, DEFAULT_CONCURRENCY)
    .addHelpText(
      'after',
      '\nExamples:\n  npm run orders -- reset --query \'ExecutionStatus = "Running" AND OrderStatus = "RESERVED"\' --reason "bad deploy 1.4.2, fixed in 1.4.3" --dry-run' +
        '\n  npm run orders -- reset <order id> --closed --reason "stock service fixed"   # its compensation failed',
    )
    .action((orderIds: string[], flags: ResetFlags, command: Command) =>
      runner.run(
        command,
        async (ctx, progress) => {
          const selection = selectionFrom(orderIds, flags.query);
          return resetOrders(
            { client: await ctx.temporal(), pool: ctx.pool(), logger: ctx.logger, progress },
            {
              selection,
              reason: flags.reason,
              closed: flags.closed ?? false,
              healthy: flags.healthy ?? false,
              dryRun: flags.dryRun ?? false,
              concurrency: flags.concurrency,
            },
          );
        },
        (item) => {
          const d = item.details ?? {};
          if (item.outcome === 'reset' || item.outcome === 'would-reset')
            return `run ${String(d.previousRunId)} → ${d.newRunId ? String(d.newRunId) : '(new run)'} from event ${String(d.resetToEventId)} ${String(d.resetToEventType)}`;
          return d.status ? `run ${String(d.runId)} ${String(d.status)}` : undefined;
        },
      ),
    );
};
