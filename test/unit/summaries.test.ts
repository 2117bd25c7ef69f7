/** What the Temporal Web UI shows for a run and its payment-deadline timer. */
import { describe, expect, it } from 'vitest';
import { runSummary } from '../../workers/bridge.js';
import { humanDuration } from '../../workflows/order-saga.js';

describe('humanDuration', () => {
  it.each([
    [600_000, '10m'],
    [90_000, '1m30s'],
    [2_500, '2.5s'],
    [86_400_000 + 3_600_000, '1d1h'],
    [0, '0s'],
  ])('%i ms is %s', (ms, text) => {
    expect(humanDuration(ms)).toBe(text);
  });
});

describe('runSummary', () => {
  const order = { customer_id: 'C100', total: '39.98', currency: 'USD' };
  it('names the customer, what was ordered and the total, and says when the run is a retry', () => {
    expect(runSummary(order, [{ sku: 'TSHIRT-BLK-M', qty: 2 }], 1)).toBe(
      'customer C100 · 2 × TSHIRT-BLK-M · 39.98 USD',
    );
    expect(
      runSummary(
        order,
        [
          { sku: 'A', qty: 1 },
          { sku: 'B', qty: 3 },
        ],
        2,
      ),
    ).toBe('customer C100 · 4 items (2 SKUs) · 39.98 USD · run 2 (retry)');
  });
});
