/** `orders replay`: replays order sagas' histories against the current workflow code (ops/replay.ts). */
import path from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_CONCURRENCY } from '../../ops/batch.js';
import { replayOrders } from '../../ops/replay.js';
import { selectionFrom } from '../../ops/select.js';
import { pairs } from '../output.js';
import { concurrency } from '../options.js';
import type { RegisterCommand } from '../runner.js';

interface ReplayFlags {
  query?: string;
  allRuns?: boolean;
  save?: string;
  workflows?: string;
  concurrency: number;
}

export const registerReplay: RegisterCommand = (program, runner) => {
  program
    .command('replay')
    .summary('replay order sagas against the current workflow code')
    .description(
      'replay order sagas against the current workflow code: run before deploying a change to workflows/; ' +
        'a non-deterministic run would be stuck after the deploy',
    )
    .argument('[orderIds...]', 'order ids (or workflow ids order-<id>); their latest run unless --all-runs')
    .option(
      '--query <visibility query>',
      'every execution matching this query, e.g. \'OrderStatus = "COMPLETED"\'',
    )
    .option('--all-runs', 'with order ids: every run of each order, not only the latest')
    .option(
      '--save <dir>',
      'also write each history to <dir> as a replay fixture (test/workflow/histories format)',
    )
    .option(
      '--workflows <path>',
      "the workflows module to replay against, e.g. another checkout's workflows/index.ts, its node_modules " +
        "installed (default: this checkout's)",
    )
    .option('--concurrency <n>', 'histories fetched at once', concurrency, DEFAULT_CONCURRENCY)
    .addHelpText(
      'after',
      "\nExamples:\n  npm run orders -- replay 3f0c…-…\n  npm run -s orders -- replay --query 'OrderStatus = \"PAYMENT_FAILED\"' --json | jq '.items[] | select(.ok | not)'",
    )
    .action((orderIds: string[], flags: ReplayFlags, command: Command) =>
      runner.run(
        command,
        async (ctx, progress) => {
          const selection = selectionFrom(orderIds, flags.query);
          ctx.quietWorkerRuntime();
          return replayOrders(
            {
              client: await ctx.temporal(),
              logger: ctx.logger,
              progress,
              ...(flags.workflows ? { workflows: { workflowsPath: path.resolve(flags.workflows) } } : {}),
            },
            {
              selection,
              allRuns: flags.allRuns ?? false,
              concurrency: flags.concurrency,
              ...(flags.save ? { saveDir: flags.save } : {}),
            },
          );
        },
        (item) => pairs(item.details, ['runId', 'events', 'eventId', 'eventType', 'savedTo']),
      ),
    );
};
