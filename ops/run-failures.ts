/**
 * Turns what Temporal answers for one run into an item's reason, with the next thing to check,
 * so a batch reports "order X: no such workflow" instead of stopping at a gRPC stack trace.
 */
import { WorkflowNotFoundError } from '@temporalio/client';
// A CommonJS module: its namespaces come through the default import under ESM.
import proto from '@temporalio/proto';
import { grpcCode } from '../lib/temporal.js';
import type { SelectedRun } from './select.js';

const NOT_FOUND = 5; // gRPC status codes
const UNAVAILABLE = new Set([4, 14]);

export function isRunNotFound(err: unknown): boolean {
  return err instanceof WorkflowNotFoundError || grpcCode(err) === NOT_FOUND;
}

/** The reason to report for a run whose call failed. */
export function runFailureReason(err: unknown, run: SelectedRun): string {
  const which = run.runId ? `${run.workflowId} (run ${run.runId})` : run.workflowId;
  if (isRunNotFound(err))
    return `no workflow ${which} in this namespace: check the order id and TEMPORAL_NAMESPACE; a saga that never started is not there (its order.placed may be in a DLQ: see \`orders dlq show\`)`;
  const code = grpcCode(err);
  if (typeof code === 'number' && UNAVAILABLE.has(code))
    return `Temporal did not answer for ${which}: ${(err as Error).message} (is it running at TEMPORAL_ADDRESS? what was asked may still have happened: look at the order's runs, or run the command again with --dry-run, before running it again)`;
  return `${which}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`;
}

/** `WORKFLOW_TASK_COMPLETED` for a history event's numeric type, as the Web UI and CLI name it. */
export function eventTypeName(type: number | null | undefined): string {
  const name = type == null ? undefined : proto.temporal.api.enums.v1.EventType[type];
  return name ? name.replace(/^EVENT_TYPE_/, '') : `event type ${String(type)}`;
}
