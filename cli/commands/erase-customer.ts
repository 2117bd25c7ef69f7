/** `orders erase-customer <id>`: one customer's personal data removed everywhere (ops/erase-customer.ts). */
import type { Command } from 'commander';
import { eraseCustomer } from '../../ops/erase-customer.js';
import { pairs } from '../output.js';
import type { RegisterCommand } from '../runner.js';

export const registerEraseCustomer: RegisterCommand = (program, runner) => {
  program
    .command('erase-customer')
    .summary("remove one customer's personal data (e-mails, notes), keeping their orders' amounts")
    .description(
      "clears the customer's e-mail addresses and the text they wrote from their orders, e-mails, outbox " +
        'events and analytics, and re-publishes their dead letters scrubbed. Refused (exit 1) while one of ' +
        'their orders is still under way. An id with no orders still has the dead letters naming it ' +
        'scrubbed (no-orders); with none of those either it is not-found (exit 1)',
    )
    .argument('<customerId>', 'the customer id, as in customer_id of their orders')
    .option('--dry-run', 'say what would be erased and scrubbed, change nothing')
    .action((customerId: string, flags: { dryRun?: boolean }, command: Command) =>
      runner.run(
        command,
        async (ctx, progress) =>
          eraseCustomer(
            {
              pool: ctx.pool(),
              connection: await ctx.amqp(),
              client: await ctx.temporal(),
              config: ctx.config,
              logger: ctx.logger,
              progress,
            },
            customerId,
            { dryRun: flags.dryRun ?? false },
          ),
        (item) =>
          pairs(item.details, [
            'orders',
            'notifications',
            'outboxEvents',
            'analyticsOrders',
            'scrubbed',
            'untouched',
          ]),
      ),
    );
};
