/**
 * `orders replay`: fetches order sagas' histories from Temporal and replays them against the
 * current workflow code, the check to run before deploying a change to workflows/: a run whose
 * history the new code cannot replay would be stuck on a failing workflow task after the deploy.
 *
 * One bundle and one replay worker for the whole batch (bundling takes seconds, a replay
 * milliseconds). Histories can be saved as fixtures for test/workflow/replay.test.ts.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import type { temporal } from '@temporalio/proto';
import { DeterminismViolationError } from '@temporalio/workflow';
import { Worker, bundleWorkflowCode, type WorkflowBundle } from '@temporalio/worker';
import type { Logger } from '../lib/logger.js';
import { WORKFLOWS_PATH } from '../workers/temporal-worker.js';
import { DEFAULT_CONCURRENCY, mapBounded } from './batch.js';
import { commandResult, noProgress, type CommandResult, type ItemResult, type Progress } from './result.js';
import { eventTypeName, isRunNotFound, runFailureReason } from './run-failures.js';
import { selectRuns, type OrderSelection, type SelectedRun } from './select.js';

type History = temporal.api.history.v1.IHistory;

/** The workflow code to replay against: the real workflows/ by default; tests inject other code. */
export type WorkflowCode = { workflowsPath: string } | { workflowBundle: WorkflowBundle };

export interface ReplayDeps {
  client: Client;
  logger: Logger;
  /** Defaults to WORKFLOWS_PATH, bundled once per call, exactly as the worker bundles it. */
  workflows?: WorkflowCode;
  progress?: Progress;
}

export interface ReplayOptions {
  selection: OrderSelection;
  /** For order ids: every run of each order (found through visibility), not only the latest. */
  allRuns?: boolean;
  /** Writes each fetched history here as `<workflowId>.json` (test/workflow/histories format). */
  saveDir?: string;
  /** Histories fetched at once. */
  concurrency?: number;
}

interface Fetched {
  run: SelectedRun & { runId: string };
  history: History;
  savedTo?: string;
}

export async function replayOrders(deps: ReplayDeps, options: ReplayOptions): Promise<CommandResult> {
  const { client, logger } = deps;
  const progress = deps.progress ?? noProgress;
  const runs = await selectRuns(client, options.selection, { allRuns: options.allRuns ?? false });
  progress.start(runs.length);
  if (runs.length === 0) return commandResult('replay', []);

  // Bundled while the other histories are fetched, from the first one that was found (both take a
  // moment), and not at all when none was.
  let bundling: Promise<WorkflowBundle> | undefined;
  const fetched = await mapBounded(
    runs,
    options.concurrency ?? DEFAULT_CONCURRENCY,
    (run) => fetchHistory(client, run),
    (f) => {
      if ('history' in f && !bundling) {
        bundling = bundle(deps.workflows ?? { workflowsPath: WORKFLOWS_PATH }, logger);
        bundling.catch(() => undefined); // awaited below; a failure is reported there, once
      }
    },
  );
  const items: Array<ItemResult | undefined> = fetched.map((f) => ('ok' in f ? f : undefined));
  for (const item of items) if (item) progress.advance(item);

  const replayable = fetched.flatMap((f, index) => ('history' in f ? [{ ...f, index }] : []));
  if (!bundling) return commandResult('replay', items as ItemResult[]);
  if (options.saveDir) await saveHistories(options.saveDir, replayable);

  const workflowBundle = await bundling;
  let current = 0;
  try {
    const histories = replayable.map(({ run, history }) => ({ workflowId: run.workflowId, history }));
    for await (const result of Worker.runReplayHistories(
      { workflowBundle, replayName: 'orders-cli-replay' },
      histories,
    )) {
      const entry = replayable[current++]!;
      const item = replayItem(entry, result.error);
      items[entry.index] = item;
      progress.advance(item);
    }
  } catch (err) {
    // The replay worker itself failed (not one history): the rest were not replayed.
    logger.error({ err: (err as Error).message }, 'the replay worker stopped');
    for (const entry of replayable.slice(current)) {
      const item: ItemResult = {
        id: entry.run.orderId,
        ok: false,
        outcome: 'not-replayed',
        reason: `the replay worker stopped before this run: ${(err as Error).message}`,
        details: runDetails(entry),
      };
      items[entry.index] = item;
      progress.advance(item);
    }
  }
  return commandResult('replay', items as ItemResult[]);
}

async function bundle(code: WorkflowCode, logger: Logger): Promise<WorkflowBundle> {
  if ('workflowBundle' in code) return code.workflowBundle;
  const quiet = () => undefined;
  const bundling = bundleWorkflowCode({
    workflowsPath: code.workflowsPath,
    logger: {
      log: quiet,
      trace: quiet,
      debug: quiet,
      info: quiet,
      warn: (message: string, meta?: Record<string, unknown>) => logger.warn(meta ?? {}, message),
      error: (message: string, meta?: Record<string, unknown>) => logger.error(meta ?? {}, message),
    },
  });
  return bundling.catch((err: unknown) => {
    throw new Error(
      `cannot bundle the workflow code at ${code.workflowsPath} (does \`npx tsc --noEmit\` pass?): ${(err as Error).message}`,
      { cause: err },
    );
  });
}

async function fetchHistory(client: Client, run: SelectedRun): Promise<Fetched | ItemResult> {
  try {
    // The latest run is named first, so the history and the reported run id are the same run's
    // (a history does not say which run it is: a reset run starts with its base run's events).
    const runId = run.runId ?? (await client.workflow.getHandle(run.workflowId).describe()).runId;
    const history = await client.workflow.getHandle(run.workflowId, runId).fetchHistory();
    return { run: { ...run, runId }, history };
  } catch (err) {
    return {
      id: run.orderId,
      ok: false,
      outcome: isRunNotFound(err) ? 'not-found' : 'failed',
      reason: runFailureReason(err, run),
      details: { workflowId: run.workflowId, ...(run.runId ? { runId: run.runId } : {}) },
    };
  }
}

/**
 * `<workflowId>.json`, or `<workflowId>.<runId>.json` for a workflow with several runs selected, so
 * that no file overwrites another.
 */
async function saveHistories(dir: string, fetched: Fetched[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  const runsOf = new Map<string, number>();
  for (const { run } of fetched) runsOf.set(run.workflowId, (runsOf.get(run.workflowId) ?? 0) + 1);
  for (const entry of fetched) {
    const { workflowId, runId } = entry.run;
    const base = fileSafe(workflowId);
    const name = runsOf.get(workflowId)! > 1 ? `${base}.${fileSafe(runId)}.json` : `${base}.json`;
    entry.savedTo = path.join(dir, name);
    await writeFile(
      entry.savedTo,
      `${historyToJSON(entry.history as Parameters<typeof historyToJSON>[0])}\n`,
    );
  }
}

/**
 * A workflow id as a file name. Order sagas' ids are `order-<uuid>`, but a query can match a saga
 * someone started by hand under any id: `../../x` or `a/b` must not write outside `--save`'s folder.
 */
export function fileSafe(id: string): string {
  const safe = id.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_');
  return safe === '' ? '_' : safe;
}

function runDetails({ run, history, savedTo }: Fetched): Record<string, unknown> {
  return {
    workflowId: run.workflowId,
    runId: run.runId,
    events: history.events?.length ?? 0,
    ...(savedTo ? { savedTo } : {}),
  };
}

function replayItem(entry: Fetched, error: Error | undefined): ItemResult {
  const details = runDetails(entry);
  if (!error) return { id: entry.run.orderId, ok: true, outcome: 'replayed', details };
  if (error instanceof DeterminismViolationError) {
    const mismatch = coreMessage(error.message);
    const event = mismatchingEvent(mismatch, entry.history);
    return {
      id: entry.run.orderId,
      ok: false,
      outcome: 'non-deterministic',
      reason:
        `${mismatch}${event ? ` (history event ${event.eventId}, ${event.eventType})` : ''}. ` +
        'The workflow code issues other commands than this run recorded: guard the change with patched() ' +
        '(PATCHES in workflows/order-saga.ts) so that running sagas keep their old path',
      details: { ...details, mismatch, error: error.message, ...(event ?? {}) },
    };
  }
  return {
    id: entry.run.orderId,
    ok: false,
    outcome: 'replay-failed',
    reason: `${error.name}: ${error.message}`,
    details: { ...details, error: error.message },
  };
}

/** A `patched()` marker (SDK core's `core_patch`) whose payloads mention `change`. */
function markerNames(event: NonNullable<History['events']>[number], change: string): boolean {
  const marker = event.markerRecordedEventAttributes;
  if (marker?.markerName !== 'core_patch') return false;
  return Object.values(marker.details ?? {}).some((payloads) =>
    (payloads.payloads ?? []).some((p) => p.data && Buffer.from(p.data).toString('utf8').includes(change)),
  );
}

/**
 * The SDK core's own sentence from the replay error ("[TMPRL1100] Nondeterminism error: Activity
 * type of scheduled event 'reserveInventory' does not match …"), without the wrapping around it.
 */
function coreMessage(message: string): string {
  return /message: "(\[TMPRL\d+\][^"]*)"/.exec(message)?.[1] ?? message;
}

/**
 * The history event a nondeterminism message points at: one it names by id ("HistoryEvent(id: 5,
 * …)", "event 5"), the first scheduling of the activity type it names ("scheduled event 'x'"), or
 * the marker of the `patched()` change it names ("patch marker encountered for change x").
 */
function mismatchingEvent(
  message: string,
  history: History,
): { eventId: number; eventType: string } | undefined {
  const events = history.events ?? [];
  const byId = /(?:HistoryEvent\(id: |event(?: id)? #?)(\d+)/i.exec(message);
  const activity = /scheduled event '([^']+)'/.exec(message);
  const patch = /patch marker encountered for change ([^\s,!]+)/i.exec(message);
  const event = byId
    ? events.find((e) => Number(e.eventId) === Number(byId[1]))
    : activity
      ? events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activity[1])
      : patch
        ? events.find((e) => markerNames(e, patch[1]!))
        : undefined;
  return event ? { eventId: Number(event.eventId), eventType: eventTypeName(event.eventType) } : undefined;
}
