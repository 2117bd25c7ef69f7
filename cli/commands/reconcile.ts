/**
 * `orders reconcile`: orders whose pipeline stalled, or that ended holding money, why, and (with --fix) the
 * stalled ones set going (ops/reconcile.ts).
 */
import { Option, type Command } from 'commander';
import { countRunningSagas } from '../../lib/temporal.js';
import { reconcileOrders } from '../../ops/reconcile.js';
import { pairs } from '../output.js';
import { duration, positiveInt } from '../options.js';
import type { RegisterCommand } from '../runner.js';

interface ReconcileFlags {
  olderThan: number;
  fix?: boolean;
  limit: number;
}

export const registerReconcile: RegisterCommand = (program, runner) => {
  program
    .command('reconcile')
    .summary('find orders whose pipeline stalled; --fix sets them going')
    .description(
      'orders not final and unchanged for --older-than whose run is not running: an order.placed never ' +
        'published or never started (dead-lettered, lost), or a run that ended without finishing the order; ' +
        'and orders that ended without a sale (or whose run stopped while giving back) while their payment ' +
        'still holds money (CHARGING, CAPTURED) or their stock is still reserved, and no run gives it back, ' +
        'which --fix leaves to an operator (orders settle <id>). Exit 0 when there are none; 1 when some are ' +
        'found (without --fix) or could not be fixed',
    )
    .addOption(
      new Option('--older-than <duration>', 'only orders unchanged this long (0s, 30s, 5m, 2h)')
        .argParser(duration)
        .default(5 * 60_000, '5m'),
    )
    .option('--fix', 'send the stuck event again, or retry the order as a new run')
    .option('--limit <n>', 'at most this many orders', positiveInt, 1000)
    .action((flags: ReconcileFlags, command: Command) =>
      runner.run(
        command,
        async (ctx, progress) =>
          reconcileOrders(
            {
              pool: ctx.pool(),
              client: await ctx.temporal(),
              logger: ctx.logger,
              progress,
              // RabbitMQ only to tell a backlog from lost events: reconcile works without it.
              bridgeQueue: { connection: () => ctx.amqp(), queue: ctx.config.BRIDGE_QUEUE },
              // The bridge holds messages unacknowledged (not in the queue's count) while its window is full.
              bridgeWindow: {
                maxRunning: ctx.config.BRIDGE_MAX_RUNNING_SAGAS,
                countRunning: async () =>
                  countRunningSagas(await ctx.temporal(), ctx.config.TEMPORAL_TASK_QUEUE),
              },
            },
            { olderThanMs: flags.olderThan, fix: flags.fix ?? false, limit: flags.limit },
          ),
        (item) => pairs(item.details, ['cause', 'status', 'run', 'newRun']),
      ),
    );
};
