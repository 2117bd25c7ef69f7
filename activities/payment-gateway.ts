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

export interface VoidRequest {
  /** The void's own key: retrying it voids once. */
  idempotencyKey: string;
  /** The idempotency key of the charge to void. */
  chargeKey: string;
}

/**
 * What a void found: no charge (or one not captured), now voided, so no later attempt under that key
 * can capture; or a capture that already happened, which must be refunded instead.
 */
export type VoidResult = { outcome: 'voided' } | { outcome: 'captured'; reference: string };

export interface RefundRequest {
  /** The refund's own key, distinct from the void's: retrying it refunds once. */
  idempotencyKey: string;
  /** The idempotency key of the charge to give back. */
  chargeKey: string;
  reference: string;
  amount: string;
  currency: string;
}

export interface PaymentGateway {
  /**
   * Throws `PaymentDeclinedError` (final) or `GatewayUnavailableError` (try again later). Gives up
   * when `signal` aborts (the activity was cancelled or timed out), so no attempt outlives its
   * activity. Same key, same answer: a retried charge gets the first attempt's capture or decline.
   */
  charge(request: ChargeRequest, signal?: AbortSignal): Promise<ChargeReceipt>;
  /** Voids the charge of unknown outcome; throws `GatewayUnavailableError` when not reached. */
  void(request: VoidRequest, signal?: AbortSignal): Promise<VoidResult>;
  /** Idempotent by `idempotencyKey`; throws `GatewayUnavailableError` when it cannot be reached. */
  refund(request: RefundRequest, signal?: AbortSignal): Promise<void>;
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

/** What the simulated gateway remembers of a charge key. */
type LedgerEntry =
  | { state: 'captured'; reference: string }
  | { state: 'declined'; error: PaymentDeclinedError }
  | { state: 'voided' };

/** Charge keys the simulated gateway remembers; the oldest are forgotten past this (bounded memory). */
const LEDGER_LIMIT = 100_000;

/**
 * A gateway that takes no real money but keeps a real gateway's promises, per charge key and within
 * this process: the first answer (a capture or a decline) is replayed to every retry; a voided key
 * never captures; a void after a capture reports the capture, to be refunded.
 *
 * @param random injected so unit tests can pin the transient-failure draw.
 */
export function createSimulatedGateway(
  config: SimulatedGatewayConfig,
  random: () => number = Math.random,
): PaymentGateway {
  const ledger = new Map<string, LedgerEntry>();
  const remember = (key: string, entry: LedgerEntry) => {
    ledger.set(key, entry);
    if (ledger.size > LEDGER_LIMIT) ledger.delete(ledger.keys().next().value!);
  };

  function maybeFailTransiently(operation: string): void {
    if (config.PAYMENT_TRANSIENT_FAILURE_RATE > 0 && random() < config.PAYMENT_TRANSIENT_FAILURE_RATE) {
      throw new GatewayUnavailableError(
        `simulated gateway: ${operation} failed transiently (PAYMENT_TRANSIENT_FAILURE_RATE=${config.PAYMENT_TRANSIENT_FAILURE_RATE})`,
      );
    }
  }

  function decide(request: ChargeRequest): LedgerEntry {
    // Declines are decided by the request alone, so every attempt agrees.
    if (request.customerId.startsWith(config.PAYMENT_DECLINE_CUSTOMER_PREFIX)) {
      const error = new PaymentDeclinedError(
        `card declined for customer ${request.customerId} (simulated: id starts with ${config.PAYMENT_DECLINE_CUSTOMER_PREFIX})`,
        'CARD_DECLINED',
      );
      return { state: 'declined', error };
    }
    if (Number(request.amount) > config.PAYMENT_DECLINE_OVER) {
      const error = new PaymentDeclinedError(
        `amount ${request.amount} ${request.currency} exceeds the limit of ${config.PAYMENT_DECLINE_OVER} (simulated)`,
        'LIMIT_EXCEEDED',
      );
      return { state: 'declined', error };
    }
    return { state: 'captured', reference: `sim_ch_${request.idempotencyKey}` };
  }

  return {
    async charge(request, signal) {
      signal?.throwIfAborted();
      const known = ledger.get(request.idempotencyKey);
      if (known?.state === 'voided') {
        throw new PaymentDeclinedError(`charge ${request.idempotencyKey} was voided`, 'VOIDED');
      }
      let entry = known ?? decide(request);
      // A transient failure happens before a capture and is not remembered; a decline is decided by
      // the request alone, so it wins over bad luck and every attempt agrees.
      if (!known && entry.state === 'captured') maybeFailTransiently('charge');
      remember(request.idempotencyKey, entry);
      if (entry.state === 'declined') throw entry.error;
      entry = entry as { state: 'captured'; reference: string };
      return { reference: entry.reference };
    },
    async void(request, signal) {
      signal?.throwIfAborted();
      maybeFailTransiently('void');
      const known = ledger.get(request.chargeKey);
      if (known?.state === 'captured') return { outcome: 'captured', reference: known.reference };
      if (known?.state !== 'declined') remember(request.chargeKey, { state: 'voided' });
      return { outcome: 'voided' };
    },
    async refund(_request, signal) {
      signal?.throwIfAborted();
      maybeFailTransiently('refund');
    },
  };
}

/**
 * The gateway took longer than the configured bound to answer. For a charge this leaves the outcome
 * unknown (the intent stays CHARGING, and the compensation voids it); a void or a refund is retried
 * under the same idempotency key.
 */
export class GatewayTimeoutError extends Error {
  override name = 'GatewayTimeoutError';
}

/**
 * Every call of `gateway` bounded by `timeoutMs`: the call's signal aborts at the deadline, and the
 * call is abandoned then even if the gateway ignores its signal (a client stuck in a socket read), so
 * no attempt outlives its activity's start-to-close timeout.
 */
export function withCallTimeout(gateway: PaymentGateway, timeoutMs: number): PaymentGateway {
  const bounded = <T>(
    operation: string,
    call: (signal: AbortSignal) => Promise<T>,
    outer: AbortSignal | undefined,
  ): Promise<T> => {
    const deadline = new AbortController();
    const signal = outer ? AbortSignal.any([outer, deadline.signal]) : deadline.signal;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const err = new GatewayTimeoutError(
          `payment gateway: ${operation} did not answer within ${timeoutMs} ms`,
        );
        deadline.abort(err);
        reject(err);
      }, timeoutMs);
      call(signal).then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  };
  return {
    charge: (request, signal) => bounded('charge', (s) => gateway.charge(request, s), signal),
    void: (request, signal) => bounded('void', (s) => gateway.void(request, s), signal),
    refund: (request, signal) => bounded('refund', (s) => gateway.refund(request, s), signal),
  };
}
