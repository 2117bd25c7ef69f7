import { describe, expect, test } from 'vitest';
import {
  GatewayTimeoutError,
  GatewayUnavailableError,
  PaymentDeclinedError,
  createSimulatedGateway,
  withCallTimeout,
  type ChargeRequest,
  type PaymentGateway,
} from '../../activities/payment-gateway.js';

const config = {
  PAYMENT_DECLINE_OVER: 10_000,
  PAYMENT_DECLINE_CUSTOMER_PREFIX: 'DECLINE',
  PAYMENT_TRANSIENT_FAILURE_RATE: 0,
};

const request = (fields: Partial<ChargeRequest> = {}): ChargeRequest => ({
  idempotencyKey: 'order-1',
  orderId: 'order-1',
  customerId: 'C100',
  amount: '19.99',
  currency: 'USD',
  ...fields,
});

describe('simulated payment gateway', () => {
  test('captures with a reference derived from the idempotency key, the same on every retry', async () => {
    const gateway = createSimulatedGateway(config);
    const first = await gateway.charge(request());
    expect(first.reference).toBe('sim_ch_order-1');
    expect(await gateway.charge(request())).toEqual(first);
  });

  test('declines customers with the configured prefix, every time', async () => {
    const gateway = createSimulatedGateway(config);
    for (let i = 0; i < 3; i++) {
      const err = await gateway.charge(request({ customerId: 'DECLINE-C1' })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PaymentDeclinedError);
      expect((err as PaymentDeclinedError).code).toBe('CARD_DECLINED');
    }
  });

  test('declines totals over the limit, and accepts the limit itself', async () => {
    const gateway = createSimulatedGateway(config);
    await expect(gateway.charge(request({ amount: '10000.01' }))).rejects.toMatchObject({
      code: 'LIMIT_EXCEEDED',
    });
    await expect(
      gateway.charge(request({ idempotencyKey: 'order-2', amount: '10000.00' })),
    ).resolves.toBeDefined();
  });

  test('replays the first answer under a key, as real gateways do: a decline stays a decline', async () => {
    const gateway = createSimulatedGateway(config);
    await expect(gateway.charge(request({ amount: '10000.01' }))).rejects.toMatchObject({
      code: 'LIMIT_EXCEEDED',
    });
    await expect(gateway.charge(request({ amount: '1.00' }))).rejects.toMatchObject({
      code: 'LIMIT_EXCEEDED',
    });
  });

  test('a voided key never captures; a void after a capture reports the capture, to be refunded', async () => {
    const gateway = createSimulatedGateway(config);
    expect(await gateway.void({ idempotencyKey: 'void-a', chargeKey: 'a' })).toEqual({ outcome: 'voided' });
    await expect(gateway.charge(request({ idempotencyKey: 'a' }))).rejects.toMatchObject({ code: 'VOIDED' });

    const { reference } = await gateway.charge(request({ idempotencyKey: 'b' }));
    expect(await gateway.void({ idempotencyKey: 'void-b', chargeKey: 'b' })).toEqual({
      outcome: 'captured',
      reference,
    });
  });

  test('fails transiently at the configured rate, using the injected random source', async () => {
    const gateway = createSimulatedGateway({ ...config, PAYMENT_TRANSIENT_FAILURE_RATE: 0.5 }, () => 0.49);
    await expect(gateway.charge(request())).rejects.toBeInstanceOf(GatewayUnavailableError);
    await expect(
      gateway.refund({
        idempotencyKey: 'r',
        chargeKey: 'c',
        reference: 'x',
        amount: '1.00',
        currency: 'USD',
      }),
    ).rejects.toBeInstanceOf(GatewayUnavailableError);
    const lucky = createSimulatedGateway({ ...config, PAYMENT_TRANSIENT_FAILURE_RATE: 0.5 }, () => 0.5);
    await expect(lucky.charge(request())).resolves.toBeDefined();
  });

  test('a decline wins over a transient failure: the answer does not depend on luck', async () => {
    const gateway = createSimulatedGateway({ ...config, PAYMENT_TRANSIENT_FAILURE_RATE: 1 }, () => 0);
    await expect(gateway.charge(request({ customerId: 'DECLINE-X' }))).rejects.toBeInstanceOf(
      PaymentDeclinedError,
    );
  });

  test('gives up on a charge whose signal has aborted (a cancelled or timed-out activity)', async () => {
    const gateway = createSimulatedGateway(config);
    await expect(gateway.charge(request(), AbortSignal.abort())).rejects.toThrow(/aborted/i);
  });
});

describe('withCallTimeout', () => {
  /** A gateway stuck in a read: it never answers and ignores its abort signal. */
  const stuck: PaymentGateway = {
    charge: () => new Promise(() => {}),
    void: () => new Promise(() => {}),
    refund: () => new Promise(() => {}),
  };

  test('every call (charge, void, refund) gives up at the bound even if the gateway ignores its signal', async () => {
    const gateway = withCallTimeout(stuck, 50);
    const refundRequest = {
      idempotencyKey: 'refund-k',
      chargeKey: 'k',
      reference: 'r',
      amount: '1.00',
      currency: 'USD',
    };
    await expect(gateway.charge(request())).rejects.toThrow(GatewayTimeoutError);
    await expect(gateway.void({ idempotencyKey: 'void-k', chargeKey: 'k' })).rejects.toThrow(
      /void did not answer within 50 ms/,
    );
    await expect(gateway.refund(refundRequest)).rejects.toThrow(/refund did not answer within 50 ms/);
  });

  test('the call’s signal aborts at the bound, and an answer in time passes through unchanged', async () => {
    let seen: AbortSignal | undefined;
    const gateway = withCallTimeout(
      {
        ...stuck,
        charge: (_req, signal) => {
          seen = signal;
          return new Promise(() => {});
        },
      },
      30,
    );
    await expect(gateway.charge(request())).rejects.toThrow(GatewayTimeoutError);
    expect(seen?.aborted).toBe(true);
    const fast = withCallTimeout(createSimulatedGateway(config), 1000);
    expect(await fast.charge(request())).toEqual({ reference: 'sim_ch_order-1' });
    await expect(fast.charge(request({ customerId: 'DECLINE-1', idempotencyKey: 'd' }))).rejects.toThrow(
      PaymentDeclinedError,
    );
  });

  test('a cancelled activity aborts the call at once', async () => {
    const cancel = new AbortController();
    let seen: AbortSignal | undefined;
    const gateway = withCallTimeout(
      {
        ...stuck,
        charge: (_req, signal) => {
          seen = signal;
          return new Promise((_resolve, reject) =>
            signal?.addEventListener('abort', () => reject(signal.reason)),
          );
        },
      },
      10_000,
    );
    const call = gateway.charge(request(), cancel.signal);
    cancel.abort(new Error('activity cancelled'));
    await expect(call).rejects.toThrow('activity cancelled');
    expect(seen?.aborted).toBe(true);
  });
});
