/**
 * The workflows the worker bundles (`workflowsPath` points here). Export names are workflow types:
 * `orderSaga` and `settleOrder` must equal WORKFLOW_TYPE and SETTLE_WORKFLOW_TYPE in ./contract.ts,
 * which callers start by name.
 */
export { orderSaga } from './order-saga.js';
export { settleOrder } from './settle-order.js';
