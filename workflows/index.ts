/**
 * The workflows the worker bundles (`workflowsPath` points here). Export names are workflow types:
 * `orderSaga` must equal WORKFLOW_TYPE in ./contract.ts, which callers start by name.
 */
export { orderSaga } from './order-saga.js';
