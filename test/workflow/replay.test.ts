/**
 * Replay: saved histories of finished sagas (test/workflow/histories/*.json) are replayed against
 * the current workflow code. A change to workflows/ that would break running sagas (a different
 * command order, a removed activity, a new timer) fails here: guard it with patched() instead.
 *
 * Re-record the histories (only when a change is meant to be incompatible and no saga of the old
 * shape is still running), or record a new scenario alone, keeping the old histories as they were
 * (they are what proves that runs recorded by older code still replay):
 *
 *   RECORD_HISTORIES=1 npx vitest run --project workflow test/workflow/replay.test.ts
 *   RECORD_HISTORIES=retried-run-payment-deadline npx vitest run --project workflow test/workflow/replay.test.ts
 *   npx prettier --write test/workflow/histories
 *
 * The `*-lean.json` histories are the same scenarios recorded since `lean-history` (one patch for
 * three history savings): local activity markers, one search-attribute upsert, the deadline timer
 * only after a failed first charge attempt;
 * `gateway-recovers-lean.json` covers a charge that fails once, then captures before the deadline.
 * Record them alone with `RECORD_HISTORIES=completed-lean,out-of-stock-lean,…`. The
 * `*-local-email.json` histories add `notify-locally`: every e-mail a local activity. The
 * `*-lean-shape.json` histories are the same shape under one patch, `lean-shape`, instead of those two.
 * `cancel-recorded-not-delivered.json` carries `recorded-cancel-stops-charge`: a cancel recorded on
 * the order that never reached the saga, whose charge then refused.
 *
 * `late-capture-stands.json` carries `late-capture-stands`: a capture whose completion was lost,
 * found by the deadline's failPayment. `deadline-yields-to-recorded-cancel.json` carries its
 * namesake: the deadline's failPayment refused for a cancel recorded on the order;
 * `cancel-asked-while-deadline-decides.json` the same, with that cancel's update accepted while
 * failPayment decided.
 *
 * `settlement.json` and `settlement-finishes-cancel.json` are the other workflow the worker runs,
 * `settleOrder` (`orders settle`), without and with the cancel it may finish.
 *
 * Six are the exception: the time-skipping server cannot produce them, so they were recorded on the
 * dev server by test/integration/saga-races.test.ts (`RECORD_HISTORIES=<name> npx vitest run --project
 * integration test/integration/saga-races.test.ts`): `cancelled-during-failing-charge.json` (before
 * `lean-history`) and `deadline-during-charge-attempt.json` carry `failed-attempt-after-cancel`;
 * `cancel-then-declined.json` carries `cancel-answers-outcome` and `decline-keeps-cancel`, and
 * `cancel-then-declined-compensation-failed.json` (the release failing after) `too-late-over-incomplete`;
 * `recorded-cancel-at-deadline.json` carries `recorded-cancel-beats-deadline`, and
 * `recorded-cancel-at-deadline-before-fix.json` is the same race recorded with that patch taken out (the
 * deadline won), so such a run still replays down its old branch.
 * Every patch in PATCHES must appear in some history (the last test).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { historyFromJSON, historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { WorkflowUpdateStage } from '@temporalio/client';
import { Worker, type Worker as WorkerType } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { recordCancelRequest } from '../../db/orders.js';
import { PATCHES } from '../../workflows/order-saga.js';
import { cancelUpdate, statusQuery } from '../../workflows/contract.js';
import { createProduct } from '../helpers/db.js';
import { downGateway, downRecordingCancel, ledgerGateway } from './fixtures/gateways.js';
import {
  captureThenLoseCompletion,
  createSagaHarness,
  holdFailPayment,
  quietTemporalRuntime,
  sagaBundle,
  type SagaHarness,
} from './fixtures/harness.js';
import { waitUntil } from '../helpers/wait.js';
import { createHeldOrder, createOrder, sagaInput } from './fixtures/orders.js';

const HISTORIES_DIR = fileURLToPath(new URL('./histories/', import.meta.url));
/** '1': every scenario; otherwise a comma-separated list of scenario names. */
const RECORD_ONLY = process.env.RECORD_HISTORIES;
const RECORD = RECORD_ONLY !== undefined && RECORD_ONLY !== '';
const recording = (name: string) => RECORD_ONLY === '1' || (RECORD_ONLY ?? '').split(',').includes(name);

/** Each scenario drives one saga to its end; the file name says which branch its history covers. */
const SCENARIOS: Record<string, (h: SagaHarness) => Promise<string>> = {
  async completed(h) {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 2 }] });
    return run(h, await h.worker(), order);
  },
  async 'out-of-stock'(h) {
    const sku = await createProduct(h.db.pool, { stock: 1 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 2 }] });
    return run(h, await h.worker(), order);
  },
  async 'payment-declined'(h) {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const customerId = `${h.config.PAYMENT_DECLINE_CUSTOMER_PREFIX}-REPLAY`;
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 1 }], customerId });
    return run(h, await h.worker(), order);
  },
  async 'payment-deadline'(h) {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 1 }] });
    return run(h, await h.worker({ gateway: downGateway() }), order);
  },
  /**
   * A retried order's second run (input run 2) whose gateway stays down past the deadline: carries
   * the run in its input and the `compensations-wait-out-outages` patch marker.
   */
  async 'retried-run-payment-deadline'(h) {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 1 }] });
    await h.db.pool.query('update orders set run = 2 where id = $1::uuid', [order.orderId]);
    return run(h, await h.worker({ gateway: downGateway() }), order, 2);
  },
  async 'cancelled-by-update'(h) {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 1 }] });
    const worker = await h.worker({ gateway: downGateway() });
    return worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order));
      await waitUntil(
        () => handle.query(statusQuery),
        (s) => s.step === 'CHARGING_PAYMENT',
        { what: 'charging', timeoutMs: 20_000 },
      );
      await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'recorded cancel' }] });
      const { status } = await handle.result();
      save(current, await handle.fetchHistory());
      return status;
    });
  },
  /**
   * The customer's cancel was recorded on the order but never reached the saga (the update lost to
   * an outage): the charge refuses and the saga cancels (`recorded-cancel-stops-charge`).
   */
  async 'cancel-recorded-not-delivered'(h) {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 1 }] });
    await recordCancelRequest(h.db.pool, order.orderId);
    return run(h, await h.worker(), order);
  },
  /**
   * The customer's cancel is recorded on the order while the first charge attempt fails (its update
   * lost), and the deadline passes before any retry asks the order: failPayment refuses and the saga
   * cancels (`deadline-yields-to-recorded-cancel`).
   */
  async 'deadline-yields-to-recorded-cancel'(h) {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 1 }] });
    const gateway = downRecordingCancel(() => recordCancelRequest(h.db.pool, order.orderId));
    const worker = await h.worker({ gateway });
    return worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order, 500)); // the retry comes after the deadline
      const { status } = await handle.result();
      save(current, await handle.fetchHistory());
      return status;
    });
  },
  /**
   * The same cancel asked of the saga too, after the deadline was decided and while failPayment
   * decides: the update is accepted there, and answered CANCELLED once failPayment refused.
   */
  async 'cancel-asked-while-deadline-decides'(h) {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 1 }] });
    const gateway = downRecordingCancel(() => recordCancelRequest(h.db.pool, order.orderId));
    const held = holdFailPayment(h, gateway);
    const worker = await h.worker({ gateway, activityOverrides: held.activityOverrides });
    return worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order, 500));
      await held.asked;
      const update = await handle.startUpdate(cancelUpdate, {
        args: [{ reason: 'cancelled by the customer' }],
        waitForStage: WorkflowUpdateStage.ACCEPTED,
      });
      held.release();
      await update.result();
      const { status } = await handle.result();
      save(current, await handle.fetchHistory());
      return status;
    });
  },
  /** The first charge attempt fails (the gateway is down), the first retry captures. */
  async 'gateway-recovers-lean'(h) {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 1 }] });
    const gateway = ledgerGateway('down');
    const charge = gateway.charge.bind(gateway);
    gateway.charge = async (request) => {
      if (gateway.calls.charge.length > 0) gateway.mode = 'up';
      return charge(request);
    };
    return run(h, await h.worker({ gateway }), order);
  },
  /**
   * The first charge attempt commits its capture, then its completion is lost (a worker crash); the
   * deadline passes before the retry, and the capture stands: the order completes
   * (`late-capture-stands`).
   */
  async 'late-capture-stands'(h) {
    const sku = await createProduct(h.db.pool, { stock: 5 });
    const order = await createOrder(h.db.pool, { items: [{ sku, qty: 1 }] });
    const worker = await h.worker({ activityOverrides: captureThenLoseCompletion(h).activityOverrides });
    return worker.runUntil(async () => {
      const handle = await h.start(worker, sagaInput(order, 500)); // the retry comes after the deadline
      const { status } = await handle.result();
      save(current, await handle.fetchHistory());
      return status;
    });
  },
};
/**
 * The scenarios recorded again after a change of the saga's shape: `<name>-lean` since
 * `lean-history`, `<name>-local-email` since `notify-locally` (every kind of e-mail it sends),
 * `<name>-lean-shape` since `lean-shape` (the two under one patch).
 */
/** A settlement (`orders settle`, workflows/settle-order.ts): a capture refunded, the stock put back. */
SCENARIOS.settlement = async (h) => {
  const sku = await createProduct(h.db.pool, { stock: 5 });
  const order = await createHeldOrder(h.db.pool, { sku, status: 'CANCELLED', payment: 'CAPTURED' });
  const worker = await h.worker({ gateway: ledgerGateway('up') });
  return worker.runUntil(async () => {
    const handle = await h.settle(
      worker,
      { orderId: order.orderId, correlationId: order.correlationId, run: 1, reason: 'recorded for replay' },
      { customerId: order.customerId, status: 'CANCELLED' },
    );
    const { money } = await handle.result();
    save(current, await handle.fetchHistory());
    return money;
  });
};

/** A settlement that finishes a cancel the stopped run had taken: a PAID order, refunded, cancelled. */
SCENARIOS['settlement-finishes-cancel'] = async (h) => {
  const sku = await createProduct(h.db.pool, { stock: 5 });
  const order = await createHeldOrder(h.db.pool, { sku, status: 'PAID', payment: 'CAPTURED' });
  await h.db.pool.query('update orders set undo_run = 1, cancel_requested_at = now() where id = $1::uuid', [
    order.orderId,
  ]);
  const worker = await h.worker({ gateway: ledgerGateway('up') });
  return worker.runUntil(async () => {
    const handle = await h.settle(
      worker,
      {
        orderId: order.orderId,
        correlationId: order.correlationId,
        run: 1,
        reason: 'recorded for replay',
        cancel: { wording: 'cancelled on request' },
      },
      { customerId: order.customerId, status: 'PAID' },
    );
    const { cancelled } = await handle.result();
    save(current, await handle.fetchHistory());
    return cancelled ? 'cancelled' : 'not cancelled';
  });
};

const RERECORDED = {
  lean: ['completed', 'out-of-stock', 'payment-declined', 'payment-deadline', 'cancelled-by-update'],
  'local-email': ['completed', 'out-of-stock', 'payment-declined', 'cancelled-by-update'],
  'lean-shape': ['completed', 'out-of-stock', 'payment-declined', 'cancelled-by-update'],
};
for (const [suffix, names] of Object.entries(RERECORDED)) {
  for (const name of names) SCENARIOS[`${name}-${suffix}`] = SCENARIOS[name]!;
}

let current = '';
async function run(
  h: SagaHarness,
  worker: WorkerType,
  order: Awaited<ReturnType<typeof createOrder>>,
  sagaRun = 1,
) {
  return worker.runUntil(async () => {
    const handle = await h.start(worker, {
      ...sagaInput(order, 60_000),
      ...(sagaRun > 1 ? { run: sagaRun } : {}),
    });
    const { status } = await handle.result();
    save(current, await handle.fetchHistory());
    return status;
  });
}

function save(name: string, history: Parameters<typeof historyToJSON>[0]): void {
  writeFileSync(path.join(HISTORIES_DIR, `${name}.json`), `${historyToJSON(history)}\n`);
}

describe.runIf(RECORD)('recording histories (RECORD_HISTORIES=1)', () => {
  let h: SagaHarness;
  beforeAll(async () => {
    h = await createSagaHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  const expected: Record<string, string> = {
    completed: 'COMPLETED',
    'out-of-stock': 'OUT_OF_STOCK',
    'payment-declined': 'PAYMENT_FAILED',
    'payment-deadline': 'PAYMENT_FAILED',
    'cancelled-by-update': 'CANCELLED',
    'retried-run-payment-deadline': 'PAYMENT_FAILED',
    'gateway-recovers-lean': 'COMPLETED',
    'cancel-recorded-not-delivered': 'CANCELLED',
    'deadline-yields-to-recorded-cancel': 'CANCELLED',
    'cancel-asked-while-deadline-decides': 'CANCELLED',
    'late-capture-stands': 'COMPLETED',
    settlement: 'refunded',
    'settlement-finishes-cancel': 'cancelled',
  };
  for (const [suffix, names] of Object.entries(RERECORDED)) {
    for (const name of names) expected[`${name}-${suffix}`] = expected[name]!;
  }
  for (const [name, scenario] of Object.entries(SCENARIOS)) {
    test.runIf(recording(name))(`records ${name}`, async () => {
      current = name;
      expect(await scenario(h)).toBe(expected[name]);
    });
  }
});

describe('replaying saved histories against the current workflow code', () => {
  // Read when the tests run, not when they are collected: in record mode the files appear meanwhile.
  const savedHistories = () => readdirSync(HISTORIES_DIR).filter((f) => f.endsWith('.json'));

  test('covers the completed, out-of-stock and payment-failed branches at least', () => {
    expect(savedHistories()).toEqual(
      expect.arrayContaining(['completed.json', 'out-of-stock.json', 'payment-declined.json']),
    );
  });

  test('every saved history replays without a nondeterminism error', async () => {
    quietTemporalRuntime();
    const histories = savedHistories().map((file) => ({
      workflowId: path.basename(file, '.json'),
      history: historyFromJSON(JSON.parse(readFileSync(path.join(HISTORIES_DIR, file), 'utf8'))),
    }));
    const results: Array<{ workflowId: string; error: string | undefined }> = [];
    for await (const result of Worker.runReplayHistories({ workflowBundle: await sagaBundle() }, histories)) {
      results.push({ workflowId: result.workflowId, error: result.error?.message });
    }
    expect(results).toEqual(histories.map(({ workflowId }) => ({ workflowId, error: undefined })));
  });

  test('every patch of the saga is in some saved history, so its old branch keeps being replayed', () => {
    const recorded = new Set<string>();
    for (const file of savedHistories()) {
      const { events } = JSON.parse(readFileSync(path.join(HISTORIES_DIR, file), 'utf8')) as {
        events: Array<{ markerRecordedEventAttributes?: PatchMarker }>;
      };
      for (const { markerRecordedEventAttributes: marker } of events) {
        if (marker?.markerName !== 'core_patch') continue;
        for (const { data } of marker.details?.['patch-data']?.payloads ?? []) {
          recorded.add((JSON.parse(Buffer.from(data, 'base64').toString()) as { id: string }).id);
        }
      }
    }
    expect(Object.values(PATCHES).filter((id) => !recorded.has(id))).toEqual([]);
  });
});

/** A `patched()` marker as a history file holds it: its payload is `{"id": "<patch id>", …}`. */
interface PatchMarker {
  markerName?: string;
  details?: { 'patch-data'?: { payloads?: Array<{ data: string }> } };
}
