/**
 * Which order sagas a Temporal command acts on: order ids typed by the operator, or a visibility
 * query (the Web UI's query box syntax, e.g. `OrderStatus = "PAYMENT_FAILED"`). Shared by every
 * command that works on runs (replay, reset, retry). reconcile finds its orders in the database instead.
 */
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import { grpcCode } from '../lib/temporal.js';
import { SEARCH_ATTRIBUTES, WORKFLOW_TYPE, orderWorkflowId } from '../workflows/contract.js';
import { UsageError, type ItemResult } from './result.js';
import { ORDER_ID } from '../domain/order.js';

export type OrderSelection = { orderIds: string[] } | { query: string };

/** One run to act on. No `runId` means "the current (latest) run of that workflow id". */
export interface SelectedRun {
  orderId: string;
  workflowId: string;
  runId?: string;
}

const WORKFLOW_ID_PREFIX = orderWorkflowId('');

/**
 * Order ids as typed: a bare UUID, or the workflow id `order-<uuid>` copied from the Web UI.
 * @throws UsageError naming each id that is neither.
 */
export function parseOrderIds(raw: readonly string[]): string[] {
  // Lower case, as PostgreSQL prints a uuid and as the workflow id has it.
  const ids = raw.map((id) =>
    (id.startsWith(WORKFLOW_ID_PREFIX) ? id.slice(WORKFLOW_ID_PREFIX.length) : id).toLowerCase(),
  );
  const bad = raw.filter((_, i) => !ORDER_ID.test(ids[i]!));
  if (bad.length > 0)
    throw new UsageError(
      `not an order id: ${bad.join(', ')} (give the order's UUID, or its workflow id order-<uuid>)`,
    );
  return [...new Set(ids)];
}

/**
 * The selection from a command's arguments: ids or `--query`, exactly one of them.
 * @throws UsageError when both or neither are given.
 */
export function selectionFrom(orderIds: readonly string[], query: string | undefined): OrderSelection {
  if (orderIds.length > 0 && query !== undefined) throw new UsageError('give order ids or --query, not both');
  if (query !== undefined) {
    if (query.trim() === '')
      throw new UsageError('--query is empty; e.g. --query \'OrderStatus = "PENDING"\'');
    return { query };
  }
  if (orderIds.length === 0)
    throw new UsageError("no orders selected: give one or more order ids, or --query '<visibility query>'");
  return { orderIds: parseOrderIds(orderIds) };
}

/**
 * The runs a selection names. Order ids give each order's latest run, or every run of it with
 * `allRuns` (found through visibility, which may lag a second behind a run that just started).
 * A query gives every execution it matches, each run separately.
 */
export async function selectRuns(
  client: Client,
  selection: OrderSelection,
  { allRuns = false }: { allRuns?: boolean } = {},
): Promise<SelectedRun[]> {
  if ('query' in selection) {
    // The narrowed query already asks for order sagas only; each answer is checked as well, because
    // an operator's query can close the narrowing's parenthesis (`…") OR ("…`) and widen it again.
    return listRuns(client, ofOrderSagas(selection.query), { types: [WORKFLOW_TYPE] });
  }
  if (!allRuns)
    return selection.orderIds.map((orderId) => ({ orderId, workflowId: orderWorkflowId(orderId) }));
  const runs: SelectedRun[] = [];
  for (const orderId of selection.orderIds) {
    const found = await listRuns(client, `WorkflowId = ${JSON.stringify(orderWorkflowId(orderId))}`);
    // An order visibility does not know (yet) still gets an item: the command reports it as not found.
    runs.push(...(found.length > 0 ? found : [{ orderId, workflowId: orderWorkflowId(orderId) }]));
  }
  return runs;
}

/**
 * The operator's query narrowed to order sagas: a namespace may hold other workflows, and
 * `reset --query 'ExecutionStatus = "Running"'` must not reset them (nor retry hand their ids to the
 * orders table). An `ORDER BY` stays at the end, where the syntax wants it.
 */
export function ofOrderSagas(query: string): string {
  const orderBy = /\border\s+by\b/i.exec(query);
  const where = (orderBy ? query.slice(0, orderBy.index) : query).trim();
  const tail = orderBy ? ` ${query.slice(orderBy.index).trim()}` : '';
  const type = `WorkflowType = ${JSON.stringify(WORKFLOW_TYPE)}`;
  return `${where === '' ? type : `${type} AND (${where})`}${tail}`;
}

const INVALID_ARGUMENT = 3; // gRPC status code

/** The executions a visibility query lists, of the workflow `types` only when given. */
export async function listRuns(
  client: Client,
  query: string,
  { types }: { types?: readonly string[] } = {},
): Promise<SelectedRun[]> {
  const runs: SelectedRun[] = [];
  try {
    for await (const execution of client.workflow.list({ query })) {
      if (types === undefined || types.includes(execution.type)) runs.push(toRun(execution));
    }
  } catch (err) {
    if (grpcCode(err) === INVALID_ARGUMENT)
      throw new UsageError(
        `Temporal refused the query ${JSON.stringify(query)}: ${causeMessage(err)} ` +
          '(use the Web UI query syntax, e.g. \'OrderStatus = "PAYMENT_FAILED" AND CustomerId = "C100"\')',
      );
    throw err;
  }
  return runs;
}

function causeMessage(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error ? cause.message : (err as Error).message;
}

function toRun(execution: WorkflowExecutionInfo): SelectedRun {
  const orderId =
    execution.typedSearchAttributes.get(SEARCH_ATTRIBUTES.OrderId) ??
    (execution.workflowId.startsWith(WORKFLOW_ID_PREFIX)
      ? execution.workflowId.slice(WORKFLOW_ID_PREFIX.length)
      : execution.workflowId);
  return { orderId, workflowId: execution.workflowId, runId: execution.runId };
}

/**
 * A run a `--query` listed whose order this database does not have: another system's sharing the
 * namespace (another environment, a test). Left alone and not a failure, so a query's exit code
 * speaks of this database's orders only; named by its id, the same order is an error.
 */
export function notOurs(run: Pick<SelectedRun, 'orderId' | 'workflowId'>): ItemResult {
  return {
    id: run.orderId,
    ok: true,
    outcome: 'not-ours',
    reason: `no order ${run.orderId} in this database: a run of another system sharing the namespace; left alone`,
    details: { workflowId: run.workflowId },
  };
}

/**
 * A query whose every run is `not-ours` most likely ran against the wrong database (another
 * environment's DATABASE_URL, a restored copy missing recent orders), not in a namespace full of
 * other systems: one more item says so, and fails the command.
 */
export function noneOurs(items: ItemResult[]): ItemResult[] {
  if (items.length === 0 || !items.every((item) => item.outcome === 'not-ours')) return items;
  return [
    ...items,
    {
      id: '(query)',
      ok: false,
      outcome: 'none-ours',
      reason:
        `every one of the ${items.length} run(s) the query matched is of an order this database does not ` +
        'have: is DATABASE_URL the right database?',
    },
  ];
}
