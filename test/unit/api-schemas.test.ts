import { randomUUID } from 'node:crypto';
import { ApplicationFailure, WorkflowNotFoundError } from '@temporalio/common';
import {
  ServiceError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
} from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor } from '../../api/cursor.js';
import { ApiError, canonicalHeaderName, formatPath, zodFieldErrors } from '../../api/errors.js';
import { classifyCancelError } from '../../api/order-workflows.js';
import { canonicalOrderRequest, orderRequestHash } from '../../api/request-hash.js';
import {
  CreateOrderBodySchema,
  LIMITS,
  ListOrdersQuerySchema,
  OrderIdParamsSchema,
  type CreateOrderBody,
} from '../../api/schemas.js';
import { ofOrderSagas, parseOrderIds } from '../../ops/select.js';
import { orderWorkflowId } from '../../workflows/contract.js';

const valid = (): CreateOrderBody => ({
  customer_id: 'C100',
  email: 'c100@example.com',
  items: [{ sku: 'TSHIRT-BLK-M', qty: 1 }],
});

function fieldsOf(input: unknown) {
  const result = CreateOrderBodySchema.safeParse(input);
  expect(result.success).toBe(false);
  return result.success ? [] : zodFieldErrors(result.error);
}

describe('CreateOrderBodySchema', () => {
  it('accepts the design document example', () => {
    expect(CreateOrderBodySchema.parse(valid())).toEqual(valid());
  });

  it.each([
    ['customer_id not a string', { ...valid(), customer_id: 42 }, 'customer_id', /string/],
    ['missing email', { ...valid(), email: undefined }, 'email', /required/],
    ['missing items', { ...valid(), items: undefined }, 'items', /required/],
    ['bad e-mail', { ...valid(), email: 'not-an-email' }, 'email', /e-mail/],
    ['empty items', { ...valid(), items: [] }, 'items', /at least one/],
    ['zero qty', { ...valid(), items: [{ sku: 'A', qty: 0 }] }, 'items[0].qty', /at least 1/],
    ['negative qty', { ...valid(), items: [{ sku: 'A', qty: -2 }] }, 'items[0].qty', /at least 1/],
    ['fractional qty', { ...valid(), items: [{ sku: 'A', qty: 1.5 }] }, 'items[0].qty', /whole/],
    ['string qty', { ...valid(), items: [{ sku: 'A', qty: '2' }] }, 'items[0].qty', /number/],
    ['huge qty', { ...valid(), items: [{ sku: 'A', qty: LIMITS.maxQty + 1 }] }, 'items[0].qty', /at most/],
    ['missing sku', { ...valid(), items: [{ qty: 1 }] }, 'items[0].sku', /required/],
    ['sku with spaces', { ...valid(), items: [{ sku: 'A B', qty: 1 }] }, 'items[0].sku', /printable/],
    ['customer id with spaces', { ...valid(), customer_id: 'C 1' }, 'customer_id', /letters/],
    ['unknown top-level field', { ...valid(), coupon: 'FREE' }, 'coupon', /unknown field/],
    [
      'unknown item field',
      { ...valid(), items: [{ sku: 'A', qty: 1, price: '0.01' }] },
      'items[0].price',
      /unknown/,
    ],
    ['body not an object', [valid()], 'body', /expected object/],
  ])('rejects %s, naming the field', (_name, input, path, message) => {
    const fields = fieldsOf(input);
    expect(fields).toContainEqual({ path, message: expect.stringMatching(message) });
  });

  it('rejects too many items', () => {
    const items = Array.from({ length: LIMITS.maxItems + 1 }, (_, i) => ({ sku: `SKU-${i}`, qty: 1 }));
    expect(fieldsOf({ ...valid(), items })).toContainEqual({
      path: 'items',
      message: expect.stringMatching(/at most/),
    });
  });

  it('rejects a duplicate SKU, naming the second line and pointing at the first', () => {
    const fields = fieldsOf({
      ...valid(),
      items: [
        { sku: 'A', qty: 1 },
        { sku: 'B', qty: 1 },
        { sku: 'A', qty: 2 },
      ],
    });
    expect(fields).toEqual([{ path: 'items[2].sku', message: expect.stringContaining('items[0].sku') }]);
  });
});

describe('an order id in capitals', () => {
  // PostgreSQL finds the order whatever the case; Temporal's workflow ids are case-sensitive, so a
  // second spelling would miss the order's running saga (a retry would not see it still going).
  const id = '0B7E6C1E-8F4E-4A7C-9A43-3F0F8F7C2B1D';
  const canonical = id.toLowerCase();

  it('is one order, one workflow: the API, the CLI and the workflow id all lower-case it', () => {
    expect(OrderIdParamsSchema.parse({ id })).toEqual({ id: canonical });
    expect(parseOrderIds([id, `order-${id}`, canonical])).toEqual([canonical]);
    expect(orderWorkflowId(id)).toBe(`order-${canonical}`);
  });
});

describe('ListOrdersQuerySchema', () => {
  it('defaults and coerces limit', () => {
    expect(ListOrdersQuerySchema.parse({})).toEqual({ limit: LIMITS.defaultPageSize });
    expect(ListOrdersQuerySchema.parse({ limit: '5', status: 'PAID' })).toEqual({ limit: 5, status: 'PAID' });
  });

  it.each([
    [{ limit: '0' }, 'limit'],
    [{ limit: '101' }, 'limit'],
    [{ limit: 'ten' }, 'limit'],
    [{ status: 'SHIPPED' }, 'status'],
    [{ statu: 'PAID' }, 'statu'],
  ])('rejects %j naming %s', (query, path) => {
    const result = ListOrdersQuerySchema.safeParse(query);
    expect(result.success).toBe(false);
    if (!result.success) expect(zodFieldErrors(result.error, 'query').map((f) => f.path)).toContain(path);
  });
});

describe('error paths', () => {
  it('spells paths the way clients write them', () => {
    expect(formatPath(['items', 0, 'qty'])).toBe('items[0].qty');
    expect(formatPath([])).toBe('body');
    expect(formatPath(['idempotency-key'], 'header')).toBe('Idempotency-Key');
    expect(canonicalHeaderName('x-correlation-id')).toBe('X-Correlation-Id');
  });

  it('renders an ApiError as the documented body', () => {
    const err = new ApiError(409, 'order_final', 'done', { details: { status: 'PAID' } });
    expect(err.toBody()).toEqual({ error: { code: 'order_final', message: 'done', status: 'PAID' } });
  });
});

describe('request hash', () => {
  it('ignores item order but not content', () => {
    const a = {
      ...valid(),
      items: [
        { sku: 'A', qty: 1 },
        { sku: 'B', qty: 2 },
      ],
    };
    const b = {
      ...valid(),
      items: [
        { sku: 'B', qty: 2 },
        { sku: 'A', qty: 1 },
      ],
    };
    expect(orderRequestHash(a)).toBe(orderRequestHash(b));
    expect(orderRequestHash(a)).not.toBe(
      orderRequestHash({
        ...a,
        items: [
          { sku: 'A', qty: 2 },
          { sku: 'B', qty: 2 },
        ],
      }),
    );
    expect(orderRequestHash(a)).not.toBe(orderRequestHash({ ...a, email: 'other@example.com' }));
    expect(orderRequestHash(a)).toMatch(/^[0-9a-f]{64}$/);
    expect(canonicalOrderRequest(a)).toBe(canonicalOrderRequest(b));
  });
});

describe('cursor', () => {
  it('round-trips and is url-safe', () => {
    const cursor = { createdAt: '2025-01-31T12:00:00.123456', id: randomUUID() };
    const binding = { caller: 'customer:C1', status: 'PAID' };
    const encoded = encodeCursor(cursor, binding);
    expect(encoded).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor(encoded, binding)).toEqual(cursor);
  });

  it.each([
    ['another caller', { caller: 'customer:C2', status: 'PAID' }],
    ['another status', { caller: 'customer:C1', status: 'PENDING' }],
    ['no status', { caller: 'customer:C1' }],
    ['a customer filter', { caller: 'customer:C1', status: 'PAID', customerId: 'C1' }],
  ])('refuses a cursor used by %s, with a 400 naming cursor', (_name, other) => {
    const encoded = encodeCursor(
      { createdAt: '2025-01-31T12:00:00.123456', id: randomUUID() },
      {
        caller: 'customer:C1',
        status: 'PAID',
      },
    );
    expect(() => decodeCursor(encoded, other)).toThrowError(/Invalid query: check cursor/);
  });

  it.each([
    'not a cursor',
    Buffer.from('{"t":"yesterday","i":"x"}').toString('base64url'),
    Buffer.from('[]').toString('base64url'),
    Buffer.from(JSON.stringify({ t: '2025-01-31T12:00:00.123456', i: randomUUID(), x: 1 })).toString(
      'base64url',
    ),
    // The right shape, but no instant: PostgreSQL would refuse it (a 500 before this was checked).
    Buffer.from(JSON.stringify({ t: '2026-99-99T99:99:99.999999', i: randomUUID() })).toString('base64url'),
    Buffer.from(JSON.stringify({ t: '0000-01-01T00:00:00.000000', i: randomUUID() })).toString('base64url'),
  ])('refuses %s with a 400 naming cursor', (raw) => {
    try {
      decodeCursor(raw, { caller: 'operator:ops' });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ApiError);
      expect((err as ApiError).status).toBe(400);
      expect((err as ApiError).fields).toEqual([{ path: 'cursor', message: expect.any(String) }]);
    }
  });
});

describe('classifyCancelError', () => {
  it('maps the Temporal client errors to outcomes', () => {
    expect(classifyCancelError(new WorkflowNotFoundError('nope', 'order-1', undefined))).toEqual({
      kind: 'not_running',
    });
    const tooLate = ApplicationFailure.create({
      message: 'too late: order is already paid',
      type: 'CancelRejected',
      nonRetryable: true,
    });
    expect(classifyCancelError(new WorkflowUpdateFailedError('Workflow Update failed', tooLate))).toEqual({
      kind: 'rejected',
      reason: 'too late: order is already paid',
    });
    expect(classifyCancelError(new WorkflowUpdateRPCTimeoutOrCancelledError('deadline'))).toEqual({
      kind: 'timeout',
    });
    expect(classifyCancelError(new ServiceError('unavailable'))).toEqual({ kind: 'unavailable' });
  });

  it('names a compensation that failed after the cancel was accepted, without its message', () => {
    const compensation = ApplicationFailure.create({
      message: 'cancel accepted but not completed: releaseInventory: connection refused',
      type: 'CompensationFailed',
      nonRetryable: true,
      details: [{ reason: 'cancelled at your request' }],
    });
    expect(
      classifyCancelError(new WorkflowUpdateFailedError('Workflow Update failed', compensation)),
    ).toEqual({ kind: 'incomplete', reason: 'cancelled at your request' });
  });

  it('treats every other update failure as a server failure (a 500 that shows nothing), not a refusal', () => {
    const internal = new Error('TypeError at activities/payment.ts:42');
    expect(() =>
      classifyCancelError(new WorkflowUpdateFailedError('Workflow Update failed', internal)),
    ).toThrow(WorkflowUpdateFailedError);
  });

  it('rethrows what it does not know', () => {
    expect(() => classifyCancelError(new RangeError('bug'))).toThrow(RangeError);
  });
});

describe('an operator query', () => {
  it('is narrowed to order sagas, its ORDER BY kept at the end', () => {
    expect(ofOrderSagas('ExecutionStatus = "Running"')).toBe(
      'WorkflowType = "orderSaga" AND (ExecutionStatus = "Running")',
    );
    expect(ofOrderSagas('OrderStatus = "PENDING" OR CustomerId = "C1" order by StartTime DESC')).toBe(
      'WorkflowType = "orderSaga" AND (OrderStatus = "PENDING" OR CustomerId = "C1") order by StartTime DESC',
    );
    expect(ofOrderSagas('ORDER BY StartTime')).toBe('WorkflowType = "orderSaga" ORDER BY StartTime');
  });
});
