/** `orders settle`: gives back what an ended order still holds, its run gone (ops/settle.ts). */
import { Option, type Command } from 'commander';
import { DEFAULT_CONCURRENCY } from '../../ops/batch.js';
import { settleOrders } from '../../ops/settle.js';
import { pairs } from '../output.js';
import { concurrency, duration } from '../options.js';
import type { RegisterCommand } from '../runner.js';

interface SettleFlags {
  reason: string;
  dryRun?: boolean;
  forgottenRun?: boolean;
  wait: number;
  concurrency: number;
}

export const registerSettle: RegisterCommand = (program, runner) => {
  program
    .command('settle')
    .summary('give back the money and stock an order still holds when no run is left to do it')
    .description(
      'for each order whose run still holds money (a charge in doubt, a capture) or stock, with no run of it ' +
        'open, that is done with them (it ended without a sale: PAYMENT_FAILED, CANCELLED, OUT_OF_STOCK, which ' +
        'orders reconcile lists as money-held or stock-held; or its run had begun to give them back: a cancel ' +
        "or a failed run, stopped midway): run the saga's compensations once more, as a workflow of its own " +
        "under the order's workflow id: the charge voided or refunded at the gateway by its key, the stock put " +
        'back, each with its event; then, if a cancel was asked for it, the order ends CANCELLED and the ' +
        'customer is e-mailed. Works after Temporal has forgotten the run (one stopped mid-way, never giving ' +
        'back: with --forgotten-run); every other order is refused with the reason',
    )
    .argument('<orderIds...>', 'order ids (or workflow ids order-<id>)')
    .requiredOption(
      '--reason <text>',
      'why: what was found, who decided; kept with the refund and the release',
    )
    .option('--dry-run', 'say what would be settled, change nothing')
    .option(
      '--forgotten-run',
      'the run of an order Temporal no longer has (past its retention) stopped for good mid-way: settle it ' +
        "though the run never began to give back (only for such orders; check TEMPORAL_NAMESPACE is the saga's)",
    )
    .addOption(
      new Option('--wait <duration>', 'wait this long for each settlement to end (0s: do not wait)')
        .argParser(duration)
        .default(60_000, '60s'),
    )
    .option('--concurrency <n>', 'orders handled at once', concurrency, DEFAULT_CONCURRENCY)
    .addHelpText(
      'after',
      '\nExample:\n  npm run orders -- settle <order id> --reason "run terminated during the gateway outage of 3 May" --dry-run',
    )
    .action((orderIds: string[], flags: SettleFlags, command: Command) =>
      runner.run(
        command,
        async (ctx, progress) =>
          settleOrders(
            {
              pool: ctx.pool(),
              client: await ctx.temporal(),
              logger: ctx.logger,
              config: ctx.config,
              progress,
            },
            {
              orderIds,
              reason: flags.reason,
              dryRun: flags.dryRun ?? false,
              forgottenRun: flags.forgottenRun ?? false,
              waitMs: flags.wait,
              concurrency: flags.concurrency,
            },
          ),
        (item) =>
          pairs(item.details, [
            'status',
            'run',
            'money',
            'stockReleased',
            'finishesCancel',
            'cancelled',
            'runId',
          ]),
      ),
    );
};
