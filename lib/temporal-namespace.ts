/**
 * What a Temporal namespace needs before the saga can run in it: to exist, and to have the saga's
 * custom search attributes (SEARCH_ATTRIBUTES in the contract; a saga that upserts one the namespace
 * lacks fails its workflow task). The worker process registers the attributes at start; the
 * integration tests' setup and the bench also create their namespace first. Both functions take
 * either connection (the client's `Connection` or the worker's `NativeConnection`).
 */
import type { OperatorService, WorkflowService } from '@temporalio/client';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes.js';
import { msToTs } from '@temporalio/common/lib/time.js';
import type { Duration } from '@temporalio/common';
import type { Logger } from './logger.js';
import { grpcCode } from './temporal.js';
import { SEARCH_ATTRIBUTES } from '../workflows/contract.js';

interface Services {
  workflowService: WorkflowService;
  operatorService: OperatorService;
}

const NOT_FOUND = 5; // gRPC status codes
const ALREADY_EXISTS = 6;
const UNIMPLEMENTED = 12;

/**
 * Registers `namespace` if the server lacks it (an existing one is left as it is), then waits until
 * the server serves it: a server caches its namespaces and refreshes them every few seconds.
 */
export async function ensureNamespace(
  { workflowService }: Pick<Services, 'workflowService'>,
  namespace: string,
  { description, retention }: { description: string; retention: Duration },
): Promise<void> {
  try {
    await workflowService.describeNamespace({ namespace });
    return;
  } catch (err) {
    if (grpcCode(err) !== NOT_FOUND) throw err;
  }
  try {
    await workflowService.registerNamespace({
      namespace,
      description,
      workflowExecutionRetentionPeriod: msToTs(retention),
    });
  } catch (err) {
    if (grpcCode(err) !== ALREADY_EXISTS) throw err;
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await workflowService.listWorkflowExecutions({ namespace, pageSize: 1 });
      return;
    } catch (err) {
      if (grpcCode(err) !== NOT_FOUND || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

/** Names of the custom search attributes the namespace has, or undefined if the server cannot say. */
async function registeredSearchAttributes(
  { operatorService }: Pick<Services, 'operatorService'>,
  namespace: string,
): Promise<Set<string> | undefined> {
  try {
    const { customAttributes } = await operatorService.listSearchAttributes({ namespace });
    return new Set(Object.keys(customAttributes ?? {}));
  } catch (err) {
    if (grpcCode(err) === UNIMPLEMENTED) return undefined; // the time-skipping test server
    throw err;
  }
}

/**
 * Registers the saga's custom search attributes that are missing. One request per attribute,
 * "already exists" counting as success: safe for many workers at once, and for a server whose
 * listing lags behind (the server on PostgreSQL lists a fresh namespace's attributes from a cache
 * refreshed every few seconds).
 *
 * @returns the names that were newly registered.
 */
export async function ensureSearchAttributes(
  { operatorService }: Pick<Services, 'operatorService'>,
  namespace: string,
  logger: Logger,
): Promise<string[]> {
  const registered = await registeredSearchAttributes({ operatorService }, namespace);
  const added: string[] = [];
  for (const key of Object.values(SEARCH_ATTRIBUTES)) {
    if (registered?.has(key.name)) continue;
    const type = encodeSearchAttributeIndexedValueType(key.type);
    if (type === undefined) throw new TypeError(`search attribute ${key.name}: unknown type ${key.type}`);
    try {
      await operatorService.addSearchAttributes({ namespace, searchAttributes: { [key.name]: type } });
      added.push(key.name);
    } catch (err) {
      if (grpcCode(err) !== ALREADY_EXISTS) throw err;
    }
  }
  if (added.length > 0) logger.info({ namespace, searchAttributes: added }, 'registered search attributes');
  return added;
}
