/** `orders retry`: runs failed orders again as a new run once their cause is fixed (ops/retry.ts). */
import type { Command } from 'commander';
import { DEFAULT_CONCURRENCY } from '../../ops/batch.js';
import { DEFAULT_RETRY_REASON } from '../../domain/order.js';
import { retryOrders } from '../../ops/retry.js';
import { selectionFrom } from '../../ops/select.js';
import { pairs } from '../output.js';
import { concurrency } from '../options.js';
import type { RegisterCommand } from '../runner.js';

interface RetryFlags {
  query?: string;
  reason: string;
  dryRun?: boolean;
  concurrency: number;
}

export const registerRetry: RegisterCommand = (program, runner) => {
  program
    .command('retry')
    .summary('run failed orders again as a new run, once the cause is fixed')
    .description(
      'move each failed order back to PENDING as a new run (run n+1 of workflow order-<id>), with an ' +
        'order.retried event; the bridge starts the run. Only PAYMENT_FAILED orders with no money taken, ' +
        'and orders a failed run left unfinished; every other order is refused with the reason',
    )
    .argument('[orderIds...]', 'order ids (or workflow ids order-<id>)')
    .option(
      '--query <visibility query>',
      'every order whose latest run matches this query (one matched only by an earlier run is refused)',
    )
    .option(
      '--reason <text>',
      'what was fixed; in the answer and the order.retried event (the customer reads fixed wording)',
      DEFAULT_RETRY_REASON,
    )
    .option('--dry-run', 'say what would be retried, change nothing')
    .option('--concurrency <n>', 'orders handled at once', concurrency, DEFAULT_CONCURRENCY)
    .addHelpText(
      'after',
      '\nExample:\n  npm run orders -- retry --query \'FailureReason = "DEADLINE_EXCEEDED"\' --reason "gateway back" --dry-run',
    )
    .action((orderIds: string[], flags: RetryFlags, command: Command) =>
      runner.run(
        command,
        async (ctx, progress) =>
          retryOrders(
            { pool: ctx.pool(), client: await ctx.temporal(), logger: ctx.logger, progress },
            {
              selection: selectionFrom(orderIds, flags.query),
              reason: flags.reason,
              dryRun: flags.dryRun ?? false,
              concurrency: flags.concurrency,
            },
          ),
        (item) => pairs(item.details, ['run', 'previousStatus', 'status']),
      ),
    );
};
