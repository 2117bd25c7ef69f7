/**
 * The payment gateway, behind an interface so the worker wires the simulated one and tests can
 * inject a gateway that is down, slow or declining on purpose.
 *
 * The simulated gateway is deterministic where the saga's tests need it to be: a customer id with
 * the configured prefix or a total over the configured limit is always declined (a business
 * outcome, never retried); only `PAYMENT_TRANSIENT_FAILURE_RATE` adds randomness, and that is 0 by
 * default.
 */
import type { Config } from '../lib/config.js';

export interface ChargeRequest {
  /** Same key, same charge: a retried attempt never takes the money twice. */
  idempotencyKey: string;
  orderId: string;
  customerId: string;
  /** Decimal string, e.g. "19.99". */
  amount: string;
  currency: string;
}

export interface ChargeReceipt {
  reference: string;
}

export interface RefundRequest {
  idempotencyKey: string;
  /** The idempotency key of the charge to give back: a charge never made is a no-op (a void). */
  chargeKey: string;
  /** The charge's reference, when the capture was recorded; unknown for a charge of unknown outcome. */
  reference?: string;
  amount: string;
  currency: string;
}

export interface PaymentGateway {
  /**
   * Throws `PaymentDeclinedError` (final) or `GatewayUnavailableError` (try again later). Gives up
   * when `signal` aborts (the activity was cancelled or timed out), so no attempt outlives its activity.
   */
  charge(request: ChargeRequest, signal?: AbortSignal): Promise<ChargeReceipt>;
  /** Idempotent by `idempotencyKey`; throws `GatewayUnavailableError` when it cannot be reached. */
  refund(request: RefundRequest): Promise<void>;
}

/** The gateway refused the charge; retrying will not change its mind. */
export class PaymentDeclinedError extends Error {
  override name = 'PaymentDeclinedError';
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/**
 * The gateway was not reached, or refused before taking any money; the same request may succeed
 * later. Anything else a charge throws (a timeout, a lost response) leaves its outcome unknown.
 */
export class GatewayUnavailableError extends Error {
  override name = 'GatewayUnavailableError';
}

export type SimulatedGatewayConfig = Pick<
  Config,
  'PAYMENT_DECLINE_OVER' | 'PAYMENT_DECLINE_CUSTOMER_PREFIX' | 'PAYMENT_TRANSIENT_FAILURE_RATE'
>;

/**
 * A gateway that takes no real money. References are derived from the idempotency key, so a retried
 * charge returns the reference of the first one, as a real gateway with idempotency keys would.
 *
 * @param random injected so unit tests can pin the transient-failure draw.
 */
export function createSimulatedGateway(
  config: SimulatedGatewayConfig,
  random: () => number = Math.random,
): PaymentGateway {
  function maybeFailTransiently(operation: string): void {
    if (config.PAYMENT_TRANSIENT_FAILURE_RATE > 0 && random() < config.PAYMENT_TRANSIENT_FAILURE_RATE) {
      throw new GatewayUnavailableError(
        `simulated gateway: ${operation} failed transiently (PAYMENT_TRANSIENT_FAILURE_RATE=${config.PAYMENT_TRANSIENT_FAILURE_RATE})`,
      );
    }
  }

  return {
    async charge(request, signal) {
      signal?.throwIfAborted();
      // Declines come first: they are decided by the request alone, so every attempt agrees.
      if (request.customerId.startsWith(config.PAYMENT_DECLINE_CUSTOMER_PREFIX)) {
        throw new PaymentDeclinedError(
          `card declined for customer ${request.customerId} (simulated: id starts with ${config.PAYMENT_DECLINE_CUSTOMER_PREFIX})`,
          'CARD_DECLINED',
        );
      }
      if (Number(request.amount) > config.PAYMENT_DECLINE_OVER) {
        throw new PaymentDeclinedError(
          `amount ${request.amount} ${request.currency} exceeds the limit of ${config.PAYMENT_DECLINE_OVER} (simulated)`,
          'LIMIT_EXCEEDED',
        );
      }
      maybeFailTransiently('charge');
      return { reference: `sim_ch_${request.idempotencyKey}` };
    },
    async refund() {
      maybeFailTransiently('refund');
    },
  };
}
