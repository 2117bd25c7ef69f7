/** `orders dlq list | show | redrive | drop`: the consumer queues' dead-letter queues (ops/dlq.ts). */
import type { Command } from 'commander';
import {
  SHOW_LIMIT,
  dropDeadLetters,
  listDeadLetters,
  redriveDeadLetters,
  showDeadLetters,
} from '../../ops/dlq.js';
import type { ItemResult } from '../../ops/result.js';
import { pairs } from '../output.js';
import { positiveInt } from '../options.js';
import type { RegisterCommand } from '../runner.js';

interface DlqFlags {
  queue?: string;
  limit?: number;
  dryRun?: boolean;
  pastWindow?: boolean;
}

interface DropFlags {
  queue: string;
  id: string[];
  reason: string;
  dryRun?: boolean;
}

const QUEUE_HELP = 'one consumer queue or its DLQ (default: all), e.g. orders.bridge or orders.bridge.dlq';

const messageSummary = (item: ItemResult) =>
  pairs(item.details, [
    'type',
    'orderId',
    'routingKey',
    'attempts',
    'publishedAt',
    'deadLetteredAt',
    'reason',
    'originalQueue',
  ]);

/** `dlq show` adds the body (its first 2000 characters), which redrive and drop refer to. */
const shownMessage = (item: ItemResult) => `${messageSummary(item)} ${pairs(item.details, ['body'])}`.trim();

export const registerDlq: RegisterCommand = (program, runner) => {
  const dlq = program
    .command('dlq')
    .summary('list, show, redrive and drop dead-lettered messages')
    .description("inspect and redrive the consumer queues' dead-letter queues (<queue>.dlq)");

  dlq
    .command('list')
    .description('each dead-letter queue with its message count')
    .option('--queue <name>', QUEUE_HELP)
    .action((flags: DlqFlags, command: Command) =>
      runner.run(
        command,
        async (ctx, progress) =>
          listDeadLetters(
            { connection: await ctx.amqp(), config: ctx.config, logger: ctx.logger, progress },
            flags.queue ? { queue: flags.queue } : {},
          ),
        (item) => pairs(item.details, ['messages', 'consumers']),
      ),
    );

  dlq
    .command('show')
    .description('the dead-lettered messages with their reason, left in place')
    .option('--queue <name>', QUEUE_HELP)
    .option('--limit <n>', `at most this many messages (default: ${SHOW_LIMIT})`, positiveInt)
    .action((flags: DlqFlags, command: Command) =>
      runner.run(
        command,
        async (ctx, progress) =>
          showDeadLetters(
            { connection: await ctx.amqp(), config: ctx.config, logger: ctx.logger, progress },
            {
              ...(flags.queue ? { queue: flags.queue } : {}),
              ...(flags.limit ? { limit: flags.limit } : {}),
            },
          ),
        shownMessage,
      ),
    );

  dlq
    .command('redrive')
    .description(
      'move dead-lettered messages back onto their original queue, unchanged (same message id, body and ' +
        'properties, without the dead-letter headers); fix the cause first. One sent longer ago than ' +
        'DLQ_REDRIVE_WINDOW_MS stays: its consumer may no longer remember having applied it',
    )
    .option('--queue <name>', QUEUE_HELP)
    .option('--limit <n>', 'at most this many messages (default: all there are when it starts)', positiveInt)
    .option('--dry-run', 'list what would be moved, move nothing')
    .option(
      '--past-window',
      "also move those sent longer ago than DLQ_REDRIVE_WINDOW_MS, trusting each effect's own key " +
        '(README "Retention") where the dedupe record may be gone',
    )
    .action((flags: DlqFlags, command: Command) =>
      runner.run(
        command,
        async (ctx, progress) =>
          redriveDeadLetters(
            { connection: await ctx.amqp(), config: ctx.config, logger: ctx.logger, progress },
            {
              ...(flags.queue ? { queue: flags.queue } : {}),
              ...(flags.limit ? { limit: flags.limit } : {}),
              dryRun: flags.dryRun ?? false,
              pastWindow: flags.pastWindow ?? false,
            },
          ),
        messageSummary,
      ),
    );

  dlq
    .command('drop')
    .description(
      'remove the named dead letters for good (every copy of each id), logging each with the reason: ' +
        'for a message whose cause will never go away (an event for an order this database never had), ' +
        'which redrive would only send round again. By message id only (a message without one, listed by ' +
        'its position, is removed in the management UI), one DLQ at a time; a different body under a named ' +
        'id is kept',
    )
    .requiredOption('--queue <name>', 'the consumer queue or its DLQ, e.g. orders.bridge')
    .requiredOption('--id <messageId...>', 'message ids as dlq show lists them')
    .requiredOption('--reason <text>', 'why they are dropped (logged)')
    .option('--dry-run', 'list what would be dropped, drop nothing')
    .action((flags: DropFlags, command: Command) =>
      runner.run(
        command,
        async (ctx, progress) =>
          dropDeadLetters(
            { connection: await ctx.amqp(), config: ctx.config, logger: ctx.logger, progress },
            { queue: flags.queue, ids: flags.id, reason: flags.reason, dryRun: flags.dryRun ?? false },
          ),
        messageSummary,
      ),
    );
};
