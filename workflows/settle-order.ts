/**
 * A settlement: gives back what an ended order's run still holds (its money, its stock) when no run
 * of it is left to do so, for instance a run terminated by hand while a compensation waited out an
 * outage, after Temporal has forgotten it. `orders settle` (ops/settle.ts) starts it under the order's
 * own workflow id, next to the saga's runs in the Web UI, once the domain allows it (`maySettle`).
 *
 * It runs the saga's own compensations, in the saga's order (the payment, then the stock), with the
 * same retry profile: each is keyed by the run and idempotent, gives back only what that run holds,
 * and never what was sold, so a settlement racing anything else, or run twice, gives nothing back
 * twice. A cancel the run was carrying out is then finished (`SettleOrderInput.cancel`).
 * Deterministic code only, like the saga (workflows/order-saga.ts).
 */
import { ApplicationFailure, log, proxyActivities } from '@temporalio/workflow';
import type * as activities from '../activities/index.js';
import type { SettleOrderInput, SettleOrderResult } from './contract.js';
import { FAILURE_TYPES, failureMessage } from './failures.js';
import { ACTIVITY_PROFILES } from './order-saga.js';

const undo = (summary: string) =>
  proxyActivities<activities.Activities>({ ...ACTIVITY_PROFILES.compensationUntilDone, summary });

export async function settleOrder(input: SettleOrderInput): Promise<SettleOrderResult> {
  const args = {
    orderId: input.orderId,
    run: input.run,
    correlationId: input.correlationId,
    reason: input.reason,
    cancelled: false,
  };
  const result: SettleOrderResult = {
    orderId: input.orderId,
    run: input.run,
    money: 'none',
    stockReleased: false,
    skipped: [],
  };
  const failures: string[] = [];
  try {
    const money = await undo('settlement: refund or void the payment').refundPayment(args);
    result.money = money.refunded ? 'refunded' : money.voided ? 'voided' : 'none';
    if (money.skipped) result.skipped.push(`refundPayment: ${money.skipped}`);
  } catch (err) {
    failures.push(`refundPayment: ${failureMessage(err)}`);
  }
  // After the payment, as in the saga: stock is only given back once no capture of the run stands.
  try {
    const stock = await undo('settlement: release the stock').releaseInventory(args);
    result.stockReleased = stock.released;
    if (stock.skipped) result.skipped.push(`releaseInventory: ${stock.skipped}`);
  } catch (err) {
    failures.push(`releaseInventory: ${failureMessage(err)}`);
  }
  // The cancel the stopped run was carrying out, finished as the saga finishes one: the order ends
  // CANCELLED (a PAID one only now that its capture is refunded), then the customer is told.
  if (input.cancel && failures.length === 0) {
    const ids = { orderId: input.orderId, run: input.run, correlationId: input.correlationId };
    await undo('settlement: cancel the order').cancelOrder({ ...ids, reason: input.cancel.wording });
    await undo('e-mail the customer: order cancelled').notifyCustomer({
      ...ids,
      kind: 'order-cancelled',
      reason: input.cancel.wording,
    });
    result.cancelled = true;
  }
  if (failures.length > 0) {
    log.error('settlement failed', { orderId: input.orderId, run: input.run, failures });
    throw ApplicationFailure.nonRetryable(
      `order ${input.orderId}: settlement of run ${input.run} failed (${failures.join('; ')}); ` +
        `fix the cause, then settle it again: orders settle ${input.orderId} --reason …`,
      FAILURE_TYPES.CompensationFailed,
      { failures },
    );
  }
  return result;
}
