/**
 * A settlement: gives back what an order's run still holds (its money, its stock) when no run of it
 * is left to do so: a run terminated by hand while a compensation waited out an outage, perhaps long
 * enough ago that Temporal has forgotten it. The order ended without a sale, or its run had begun
 * to give back (a cancel, a failed run). `orders settle` (ops/settle.ts) starts it under the order's
 * own workflow id, next to the saga's runs in the Web UI, once the domain allows it (`maySettle`).
 *
 * It runs the saga's own compensations, in the saga's order (the payment, then the stock), with the
 * same retry profile: each is keyed by the run and idempotent, gives back only what that run holds,
 * and never sold stock, so a settlement racing anything else, or run twice, gives nothing back
 * twice. Then, when a cancel was asked for the order (`SettleOrderInput.cancel`), the order ends
 * CANCELLED as the saga ends a cancelled one. Deterministic code only, like the saga
 * (workflows/order-saga.ts); a change to what it schedules keeps `settlement.json` replaying.
 */
import {
  ApplicationFailure,
  log,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type * as activities from '../activities/index.js';
import {
  SEARCH_ATTRIBUTES,
  cancelUpdate,
  type CancelRequest,
  type SettleOrderInput,
  type SettleOrderResult,
} from './contract.js';
import { FAILURE_TYPES, failureMessage } from './failures.js';
import { ACTIVITY_PROFILES } from './order-saga.js';

const undo = (summary: string) =>
  proxyActivities<activities.Activities>({ ...ACTIVITY_PROFILES.compensationUntilDone, summary });

export async function settleOrder(input: SettleOrderInput): Promise<SettleOrderResult> {
  // The API sends a customer's cancel to whatever runs under the order's workflow id: refused with a
  // reason (409), not left to the SDK's "no handler" failure (a 500).
  const refuse = (_request: CancelRequest): never => {
    throw settlingNow();
  };
  setHandler(cancelUpdate, refuse, { validator: refuse });

  const ids = { orderId: input.orderId, run: input.run, correlationId: input.correlationId };
  // A settlement that finishes a cancel gives back as the cancel's (the order keeps no "stopped after
  // an error" reason meanwhile); an activity input only, so recorded settlements replay unchanged.
  const args = { ...ids, reason: input.reason, cancelled: input.cancel !== undefined };
  const result: SettleOrderResult = {
    orderId: input.orderId,
    run: input.run,
    money: 'none',
    stockReleased: false,
    skipped: [],
  };
  const failures: string[] = [];
  const step = async (name: string, run: () => Promise<void>) => {
    try {
      await run();
    } catch (err) {
      failures.push(`${name}: ${failureMessage(err)}`);
    }
  };

  await step('refundPayment', async () => {
    const money = await undo('settlement: refund or void the payment').refundPayment(args);
    result.money = money.refunded ? 'refunded' : money.voided ? 'voided' : 'none';
    if (money.skipped) result.skipped.push(`refundPayment: ${money.skipped}`);
  });
  // After the payment, as in the saga: a PAID order's stock is given back only once its capture is
  // refunded (releaseInventory never gives back sold stock).
  await step('releaseInventory', async () => {
    const stock = await undo('settlement: release the stock').releaseInventory(args);
    result.stockReleased = stock.released;
    if (stock.skipped) result.skipped.push(`releaseInventory: ${stock.skipped}`);
  });
  // The cancel its customer asked for, finished as the saga finishes one, once nothing is held.
  const cancel = input.cancel;
  if (cancel && failures.length === 0) {
    await step('cancel', async () => {
      await undo('settlement: cancel the order').cancelOrder({ ...ids, reason: cancel.wording });
      result.cancelled = true;
      upsertSearchAttributes([{ key: SEARCH_ATTRIBUTES.OrderStatus, value: 'CANCELLED' }]);
      await undo('e-mail the customer: order cancelled').notifyCustomer({
        ...ids,
        kind: 'order-cancelled',
        reason: cancel.wording,
      });
    });
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

function settlingNow(): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    'An operator is settling this order (giving back its money and stock); ask again once that is done.',
    FAILURE_TYPES.CancelRejected,
  );
}
