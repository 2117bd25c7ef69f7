/**
 * The settings of issue 11's limits and retention: refused at start-up when they would let a
 * duplicate through or cut the outbox publisher's transaction, each refusal naming the setting.
 */
import { describe, expect, test } from 'vitest';
import { defaultRetryDelayMs } from '../../lib/amqp/consumer.js';
import { DELIVERY_LIMIT_BACKSTOP } from '../../lib/amqp/topology.js';
import { ConfigError, REDELIVERY_WINDOW_MS, duplicateWindows, loadConfig } from '../../lib/config.js';
import { buildEvent } from '../../lib/events.js';
import { LIMITS } from '../../api/schemas.js';

const DAY = 24 * 3600_000;

describe('retention settings', () => {
  test('the defaults cover every duplicate window', () => {
    const config = loadConfig({});
    const windows = duplicateWindows(config);
    expect(config.PROCESSED_EVENTS_RETENTION_MS).toBeGreaterThanOrEqual(windows.processedEvents);
    expect(config.OUTBOX_RETENTION_MS).toBeGreaterThanOrEqual(windows.outbox);
  });

  test('the redelivery window is the consumers’ own: delivery limit × longest retry delay, plus the outbox backoff', () => {
    expect(REDELIVERY_WINDOW_MS).toBe(DELIVERY_LIMIT_BACKSTOP * defaultRetryDelayMs(1000) + 60_000);
  });

  test('processed events kept for less than deadline + redelivery + re-drive window: refused, naming the minimum', () => {
    const env = { PAYMENT_DEADLINE_MS: String(600_000), DLQ_REDRIVE_WINDOW_MS: String(7 * DAY) };
    const minimum = 600_000 + REDELIVERY_WINDOW_MS + 7 * DAY;
    expect(() => loadConfig({ ...env, PROCESSED_EVENTS_RETENTION_MS: String(minimum - 1) })).toThrow(
      new RegExp(`PROCESSED_EVENTS_RETENTION_MS="${minimum - 1}": must be at least ${minimum} ms`),
    );
    expect(
      loadConfig({ ...env, PROCESSED_EVENTS_RETENTION_MS: String(minimum) }).PROCESSED_EVENTS_RETENTION_MS,
    ).toBe(minimum);
  });

  test('a longer re-drive window raises the minimum of processed events, not of the outbox', () => {
    const attempt = () => loadConfig({ DLQ_REDRIVE_WINDOW_MS: String(60 * DAY) }); // retention default: 30 days
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/PROCESSED_EVENTS_RETENTION_MS="\(default\)": must be at least/);
    expect(attempt).not.toThrow(/OUTBOX_RETENTION_MS/);
  });

  test('outbox rows have their own minimum', () => {
    expect(() => loadConfig({ OUTBOX_RETENTION_MS: String(3600_000) })).toThrow(
      /OUTBOX_RETENTION_MS="3600000": must be at least/,
    );
  });
});

describe('blank values', () => {
  test('are unset, not 0: a stray space does not switch a timeout off or pick a random port', () => {
    const config = loadConfig({
      DATABASE_STATEMENT_TIMEOUT_MS: ' ',
      BRIDGE_MAX_RUNNING_SAGAS: '\t',
      OUTBOX_HTTP_PORT: ' ',
    });
    const defaults = loadConfig({});
    expect(config.DATABASE_STATEMENT_TIMEOUT_MS).toBe(defaults.DATABASE_STATEMENT_TIMEOUT_MS);
    expect(config.DATABASE_STATEMENT_TIMEOUT_MS).toBeGreaterThan(0);
    expect(config.BRIDGE_MAX_RUNNING_SAGAS).toBe(defaults.BRIDGE_MAX_RUNNING_SAGAS);
    expect(config.OUTBOX_HTTP_PORT).toBe(defaults.OUTBOX_HTTP_PORT);
    expect(loadConfig({ PORT: ' 8080 ' }).PORT).toBe(8080);
  });
});

describe('event amounts', () => {
  test('the subscribers accept every amount the gateway captures', () => {
    expect(() => loadConfig({ EVENT_MAX_AMOUNT: '5000' })).toThrow(
      /EVENT_MAX_AMOUNT.*must be at least PAYMENT_DECLINE_OVER \(10000\)/,
    );
    expect(loadConfig({ EVENT_MAX_AMOUNT: '5000', PAYMENT_DECLINE_OVER: '5000' }).EVENT_MAX_AMOUNT).toBe(
      5000,
    );
  });

  test("no larger than loyalty's integer points can hold (one point per whole unit)", () => {
    expect(() => loadConfig({ EVENT_MAX_AMOUNT: '2147483648' })).toThrow(/EVENT_MAX_AMOUNT/);
    expect(loadConfig({ EVENT_MAX_AMOUNT: '2147483647' }).EVENT_MAX_AMOUNT).toBe(2_147_483_647);
  });
});

describe('database session limits', () => {
  test('defaults are on; 0 turns one off', () => {
    const config = loadConfig({ DATABASE_LOCK_TIMEOUT_MS: '0' });
    expect(config.DATABASE_STATEMENT_TIMEOUT_MS).toBe(30_000);
    expect(config.DATABASE_LOCK_TIMEOUT_MS).toBe(0);
    expect(config.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS).toBe(60_000);
  });

  test('an idle-in-transaction timeout the outbox publisher’s confirm wait would hit is refused', () => {
    expect(() =>
      loadConfig({ DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: '5000', OUTBOX_PUBLISH_TIMEOUT_MS: '5000' }),
    ).toThrow(/DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS="5000": must be 0 or above OUTBOX_PUBLISH_TIMEOUT_MS/);
  });

  test('a gateway timeout at or above the activities’ 30 s start-to-close is refused', () => {
    expect(() => loadConfig({ PAYMENT_GATEWAY_TIMEOUT_MS: '30000' })).toThrow(/PAYMENT_GATEWAY_TIMEOUT_MS/);
  });
});

describe('production credentials and secure connections', () => {
  test('NODE_ENV=production refuses the built-in default logins, naming each variable', () => {
    const attempt = () => loadConfig({ NODE_ENV: 'production' }); // defaults: acme:acme, guest:guest
    expect(attempt).toThrow(/DATABASE_URL="\(default\)": uses the built-in default login acme:acme/);
    expect(attempt).toThrow(/AMQP_URL="\(default\)": uses the built-in default login guest:guest/);
    expect(() =>
      loadConfig({
        NODE_ENV: 'production',
        DATABASE_URL: 'postgres://postgres:postgres@db:5432/acme?sslmode=verify-full',
        AMQP_URL: 'amqps://acme-outbox:s3cret@mq:5671',
      }),
    ).toThrow(/DATABASE_URL=".*\*\*\*@db.*": uses the built-in default login postgres:postgres/);
    expect(() =>
      loadConfig({
        NODE_ENV: 'production',
        AMQP_URL: 'amqps://mq:5671',
        DATABASE_URL: 'postgres://app:x@db/acme',
      }),
    ).toThrow(/AMQP_URL.*guest:guest \(none given\)/);
    const ok = loadConfig({
      NODE_ENV: 'production',
      DATABASE_URL: 'postgres://acme_app:s3cret@db:5432/acme?sslmode=verify-full',
      AMQP_URL: 'amqps://acme-outbox:s3cret@mq:5671',
    });
    expect(ok.NODE_ENV).toBe('production');
  });

  test('the same defaults are fine outside production (the local setup and the tests)', () => {
    expect(loadConfig({}).NODE_ENV).toBe('development');
  });

  test('the token keys come over https: no other scheme, and not plain http in production', () => {
    for (const url of ['file:///etc/jwks.json', 'ftp://idp/jwks'])
      expect(() => loadConfig({ AUTH_JWKS_URL: url }), url).toThrow(/AUTH_JWKS_URL.*https:\/\//);
    expect(loadConfig({ AUTH_JWKS_URL: 'http://127.0.0.1:9999/jwks' }).AUTH_JWKS_URL).toMatch(/^http:/);
    const production = {
      NODE_ENV: 'production',
      DATABASE_URL: 'postgres://acme_app:s3cret@db:5432/acme?sslmode=verify-full',
      AMQP_URL: 'amqps://acme-outbox:s3cret@mq:5671',
    };
    expect(() => loadConfig({ ...production, AUTH_JWKS_URL: 'http://idp/jwks' })).toThrow(
      /AUTH_JWKS_URL.*must be https:\/\/ when NODE_ENV=production/,
    );
    expect(loadConfig({ ...production, AUTH_JWKS_URL: 'https://idp/jwks' }).AUTH_JWKS_URL).toBe(
      'https://idp/jwks',
    );
  });

  test('mTLS needs a certificate and its key together', () => {
    expect(() => loadConfig({ TEMPORAL_TLS_CERT_FILE: '/etc/temporal/client.pem' })).toThrow(
      /TEMPORAL_TLS_KEY_FILE.*needs both/,
    );
  });
});

describe('Temporal connection options', () => {
  test('plain by default; TLS with the files read, or an API key, when configured', async () => {
    const { temporalConnectionOptions } = await import('../../lib/temporal.js');
    expect(temporalConnectionOptions({ TEMPORAL_ADDRESS: 'h:7233' })).toEqual({ address: 'h:7233' });
    const file = new URL('../../package.json', import.meta.url).pathname;
    const mtls = temporalConnectionOptions({
      TEMPORAL_ADDRESS: 'ns.acct.tmprl.cloud:7233',
      TEMPORAL_TLS_CERT_FILE: file,
      TEMPORAL_TLS_KEY_FILE: file,
      TEMPORAL_TLS_SERVER_NAME: 'temporal.internal',
    });
    expect(mtls.tls).toMatchObject({
      serverNameOverride: 'temporal.internal',
      clientCertPair: { crt: expect.any(Buffer) },
    });
    expect(temporalConnectionOptions({ TEMPORAL_ADDRESS: 'h:7233', TEMPORAL_API_KEY: 'k' })).toEqual({
      address: 'h:7233',
      tls: {},
      apiKey: 'k',
    });
  });
});

describe('the message size limit', () => {
  test('its floor holds the largest order.placed the API can produce, with room to spare', () => {
    const largest = buildEvent('order.placed', {
      id: '00000000-0000-4000-8000-000000000000',
      orderId: '00000000-0000-4000-8000-000000000001',
      correlationId: 'c'.repeat(128),
      data: {
        customerId: 'C'.repeat(64),
        email: `${'e'.repeat(64)}@${'d'.repeat(185)}.com`,
        items: Array.from({ length: LIMITS.maxItems }, (_, i) => ({
          sku: `${i}`.padStart(64, 'S'),
          qty: LIMITS.maxQty,
          unitPrice: '99999999.99',
        })),
        total: '99999999999.99',
        currency: 'EUR',
      },
    });
    const bytes = Buffer.byteLength(JSON.stringify(largest));
    const floor = 16 * 1024;
    expect(bytes * 2).toBeLessThan(floor);
    expect(() => loadConfig({ AMQP_MAX_MESSAGE_BYTES: String(floor - 1) })).toThrow(/AMQP_MAX_MESSAGE_BYTES/);
    expect(loadConfig({ AMQP_MAX_MESSAGE_BYTES: String(floor) }).AMQP_MAX_MESSAGE_BYTES).toBe(floor);
  });
});
