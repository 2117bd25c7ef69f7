/**
 * The one place that reads `process.env`.
 *
 * Every process calls `loadConfig()` once in its `main()` and passes the typed result down. Defaults
 * point at the local servers that `scripts/infra.sh` installs, so a fresh clone runs with no `.env`;
 * setting `DATABASE_URL`, `AMQP_URL` or `TEMPORAL_ADDRESS` points the system at existing servers
 * instead (and makes `scripts/infra.sh` leave that piece alone).
 */
import { z } from 'zod';

const intFrom = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const durationMs = (min: number, max: number) => intFrom(min, max).describe('milliseconds');
const DAY_MS = 24 * 3600_000;

const schema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .default('postgres://acme:acme@127.0.0.1:5432/acme'),
  DATABASE_POOL_MAX: intFrom(1, 200).default(10),
  /**
   * Server-side limits set on every session of every pool (db/pool.ts), so a runaway query, a wait on
   * a lock held by a stuck transaction, or a transaction left open by a hung process ends on the
   * server's side instead of holding rows and connections; 0 turns one off.
   */
  DATABASE_STATEMENT_TIMEOUT_MS: durationMs(0, 3600_000).default(30_000),
  DATABASE_LOCK_TIMEOUT_MS: durationMs(0, 3600_000).default(10_000),
  DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: durationMs(0, 3600_000).default(60_000),
  /**
   * `on`: each connection prepares every statement once, then only binds and runs it (db/pool.ts;
   * a third less PostgreSQL CPU per order). `off` for a pooler in transaction mode that does not
   * keep prepared statements (PgBouncer before 1.21, or without `max_prepared_statements`).
   */
  DATABASE_PREPARED_STATEMENTS: z.enum(['on', 'off']).default('on'),

  AMQP_URL: z
    .string()
    .regex(/^amqps?:\/\//, 'must be an amqp:// URL')
    .default('amqp://guest:guest@127.0.0.1:5672'),
  AMQP_EXCHANGE: z.string().min(1).default('acme.events'),
  /**
   * Broker users whose events the subscribers accept (comma-separated): the outbox publisher's and
   * the operators' (re-drive). Each publishes with RabbitMQ's `user_id` property set to its login,
   * which the broker refuses unless it is that login, so a message is from whom it says.
   */
  AMQP_TRUSTED_PUBLISHERS: z
    .string()
    .regex(
      /^[^,\s]+(,[^,\s]+)*$/,
      'must be broker user names separated by commas, e.g. acme-outbox,acme-operator',
    )
    .default('acme-outbox,acme-operator')
    .transform((value) => Object.freeze(value.split(','))),
  /**
   * Larger messages go to the consumer's DLQ at once, unread (every consumer). At least 16 KiB: the
   * largest order.placed the API can produce (50 lines of 64-character SKUs, a 254-character e-mail)
   * is about 7 KiB, and a lower limit would send valid orders to the DLQ, never started.
   */
  AMQP_MAX_MESSAGE_BYTES: intFrom(16 * 1024, 16 * 1024 * 1024).default(64 * 1024),
  /**
   * Events carrying an amount above this (or with more than 2 decimals) go to the DLQ at once, and the
   * API takes no order whose total is above it. At most 2^31 − 1: loyalty stores one point per whole
   * unit of a capture in an integer column.
   */
  EVENT_MAX_AMOUNT: z.coerce.number().positive().max(2_147_483_647).default(10_000_000),
  /** The bridge's durable queue, bound to `order.placed` and `order.retried`; dead letters go to `<queue>.dlq`. */
  BRIDGE_QUEUE: z.string().min(1).default('orders.bridge'),
  LOYALTY_QUEUE: z.string().min(1).default('loyalty.points'),
  /** The analytics subscriber's queue, bound to every order event. */
  ANALYTICS_QUEUE: z.string().min(1).default('analytics.orders'),
  /**
   * The broker login each consumer reads its queue with (the user of its own AMQP_URL). A consumer
   * stamps its dead letters with its login, which the broker validates; `dlq redrive` believes the
   * sender recorded on a dead letter (`x-original-user-id`) only when the copy came from the login
   * that reads that queue, not from another service able to publish to the dead-letter exchange.
   */
  BRIDGE_AMQP_USER: z.string().min(1).default('acme-bridge'),
  LOYALTY_AMQP_USER: z.string().min(1).default('acme-loyalty'),
  ANALYTICS_AMQP_USER: z.string().min(1).default('acme-analytics'),

  TEMPORAL_ADDRESS: z.string().min(1).default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default('orders'),
  TEMPORAL_UI_URL: z.url().default('http://localhost:8233'),
  /**
   * Secure connections to Temporal (lib/temporal.ts: the clients and the worker): mTLS with a client
   * certificate and key (PEM files; a self-hosted cluster, or Temporal Cloud with mTLS), or an API
   * key (Temporal Cloud), which implies TLS. TEMPORAL_TLS_CA_FILE trusts a private CA;
   * TEMPORAL_TLS_SERVER_NAME overrides the name checked in the server's certificate.
   */
  TEMPORAL_TLS_CERT_FILE: z.string().min(1).optional(),
  TEMPORAL_TLS_KEY_FILE: z.string().min(1).optional(),
  TEMPORAL_TLS_CA_FILE: z.string().min(1).optional(),
  TEMPORAL_TLS_SERVER_NAME: z.string().min(1).optional(),
  TEMPORAL_API_KEY: z.string().min(1).optional(),
  /**
   * `production` refuses the built-in default credentials (RabbitMQ's guest/guest, PostgreSQL's
   * postgres/postgres, this repository's local acme/acme). PostgreSQL TLS is DATABASE_URL's
   * `sslmode` (e.g. `?sslmode=verify-full&sslrootcert=/etc/ssl/pg-ca.pem`); RabbitMQ TLS is an
   * `amqps://` AMQP_URL.
   */
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),

  PORT: intFrom(1, 65535).default(8000),
  /**
   * Where the small HTTP servers of the other processes listen (`/metrics`, `/health`, `/ready`).
   * An IP address (the Temporal SDK's exporter takes no host name): loopback by default, `0.0.0.0` in
   * containers so that Prometheus can reach them.
   */
  METRICS_HOST: z
    .union([z.ipv4(), z.ipv6()], { error: 'must be an IP address, e.g. 0.0.0.0' })
    .default('127.0.0.1'),
  /** Ports of those servers, one per process; 0 picks a free port (tests). */
  OUTBOX_HTTP_PORT: intFrom(0, 65535).default(9101),
  BRIDGE_HTTP_PORT: intFrom(0, 65535).default(9102),
  WORKER_HTTP_PORT: intFrom(0, 65535).default(9103),
  LOYALTY_HTTP_PORT: intFrom(0, 65535).default(9104),
  ANALYTICS_HTTP_PORT: intFrom(0, 65535).default(9106),
  /** The Temporal SDK's own Prometheus exporter in the worker (on METRICS_HOST); 0 turns it off. */
  WORKER_SDK_METRICS_PORT: intFrom(0, 65535).default(9105),
  /**
   * Traces (lib/tracing.ts): `on` loads the OpenTelemetry SDK in every process and exports each order
   * run's trace to Zipkin (ZIPKIN_URL; `npm run up` starts one), or to an OTLP collector when
   * OTEL_EXPORTER_OTLP_ENDPOINT is set (Jaeger, Tempo, …). `off` loads nothing.
   */
  TRACING: z.enum(['on', 'off']).default('off'),
  ZIPKIN_URL: z.url().default('http://127.0.0.1:9411/api/v2/spans'),
  /** An OTLP/HTTP collector's base URL (traces go to `<url>/v1/traces`), as OpenTelemetry names it. */
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url().optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  OUTBOX_BATCH_SIZE: intFrom(1, 1000).default(100),
  OUTBOX_POLL_INTERVAL_MS: durationMs(10, 60_000).default(1000),
  OUTBOX_PUBLISH_TIMEOUT_MS: durationMs(100, 120_000).default(5000),

  /**
   * Retention (db/retention.ts), run by the outbox publisher's process every RETENTION_INTERVAL_MS:
   * published outbox rows and consumers' processed-event records older than their setting, and
   * idempotency keys older than IDEMPOTENCY_KEY_RETENTION_HOURS (no longer honoured then), are removed; the order's event timeline (order_events) and the dead-letter queues
   * are kept. Each age is checked against the longest window in which a duplicate can still arrive
   * (`retentionProblems` below); a shorter one is refused at start-up.
   */
  RETENTION_INTERVAL_MS: durationMs(1000, DAY_MS).default(3600_000),
  OUTBOX_RETENTION_MS: durationMs(60_000, 3650 * DAY_MS).default(7 * DAY_MS),
  PROCESSED_EVENTS_RETENTION_MS: durationMs(60_000, 3650 * DAY_MS).default(30 * DAY_MS),
  /**
   * How long after an event operators may still re-drive a dead-lettered copy of it and count on its
   * consumers' dedupe records: part of the duplicate window PROCESSED_EVENTS_RETENTION_MS must cover.
   */
  DLQ_REDRIVE_WINDOW_MS: durationMs(0, 3650 * DAY_MS).default(14 * DAY_MS),

  BRIDGE_PREFETCH: intFrom(1, 1000).default(32),
  BRIDGE_MAX_DELIVERIES: intFrom(1, 100).default(5),
  /**
   * The bridge starts no more sagas while this many run (Temporal's count; 0: no limit), so a backlog
   * drains at the steady rate instead of thrashing the workers' sticky caches (workers/bridge-admission.ts).
   * About the workers' total WORKER_MAX_CACHED_WORKFLOWS; a message waits at most 5 minutes for it.
   */
  BRIDGE_MAX_RUNNING_SAGAS: intFrom(0, 1_000_000).default(100),
  LOYALTY_PREFETCH: intFrom(1, 1000).default(32),
  LOYALTY_MAX_DELIVERIES: intFrom(1, 100).default(5),
  ANALYTICS_PREFETCH: intFrom(1, 1000).default(32),
  ANALYTICS_MAX_DELIVERIES: intFrom(1, 100).default(5),
  /**
   * Workflow runs the Temporal worker keeps in memory between their tasks (the sticky cache). The
   * SDK's default grows with the heap (about 2300 on a 4 GB heap), and a backlog of started sagas then
   * holds the worker's memory far above what it needs; an evicted run is replayed on its next task
   * (a short history since the lean-history patch). 50: measured in a 1000-order backlog drain
   * (README "Performance"), 40 MB less peak RSS than 200 at the same drain rate.
   */
  WORKER_MAX_CACHED_WORKFLOWS: intFrom(2, 100_000).default(50),

  /**
   * Authentication (api/auth.ts): bearer JWTs. With `AUTH_JWKS_URL` set, tokens are verified
   * against that key set (any OIDC provider's `jwks_uri`); without it, against the local key pair
   * that `npm run up` generates under `AUTH_LOCAL_KEY_DIR` (`npm run token` signs with it).
   */
  AUTH_JWKS_URL: z
    .url({ protocol: /^https?$/, error: 'must be the https:// URL of a JWKS (an OIDC jwks_uri)' })
    .optional(),
  /** The `iss` every accepted token must carry. */
  AUTH_ISSUER: z.string().min(1).default('acme-orders-local'),
  /** The `aud` every accepted token must carry (one of, when the token lists several). */
  AUTH_AUDIENCE: z.string().min(1).default('acme-orders-api'),
  /**
   * Where the roles are in the token: a claim name or a dotted path (`realm_access.roles` for
   * Keycloak), holding a string or an array of strings.
   */
  AUTH_ROLE_CLAIM: z
    .string()
    .regex(/^[^.\s]+(\.[^.\s]+)*$/, 'must be a claim name or a dotted path')
    .default('roles'),
  /** The role that makes a caller an operator; every other authenticated caller is a customer. */
  AUTH_OPERATOR_ROLE: z.string().min(1).default('operator'),
  /**
   * Where a customer's id is in their token: `sub`, or a claim of the provider's for providers whose
   * `sub` is not one (Auth0's `auth0|5f7c…`): a claim name, namespaced URLs included
   * (`https://acme.example/customer_id`), or a dotted path into a nested claim.
   */
  AUTH_CUSTOMER_CLAIM: z
    .string()
    .regex(/^\S+$/, 'must be a claim name or a dotted path, without spaces')
    .default('sub'),
  /** Local mode: the key pair's folder (git-ignored). */
  AUTH_LOCAL_KEY_DIR: z.string().min(1).default('.data/auth'),
  /**
   * The `typ` header every accepted token must carry, when set: `at+jwt` for a provider that issues
   * RFC 9068 access tokens, so that its ID tokens for the same audience (typed `JWT`, or not at all)
   * are refused as bearer tokens. Unset, the header is not checked (the local tokens say `JWT`).
   */
  AUTH_TOKEN_TYPE: z.string().regex(/^\S+$/, 'must be a media type such as at+jwt').optional(),
  /** Leeway for `exp`/`nbf`/`iat` against clock skew between the issuer and this server. */
  AUTH_CLOCK_TOLERANCE_S: intFrom(0, 300).default(30),

  /**
   * Per-caller limit on writes (POST), counted per token subject in each API instance: at most
   * RATE_LIMIT_WRITES per RATE_LIMIT_WINDOW_MS. The default (600/s) lets the benchmark's single
   * caller through while a runaway client is stopped.
   */
  RATE_LIMIT_WRITES: intFrom(1, 10_000_000).default(6000),
  RATE_LIMIT_WINDOW_MS: durationMs(1000, 3600_000).default(10_000),
  /** How long a request waits for a free database connection before it is answered 503. */
  DATABASE_POOL_ACQUIRE_TIMEOUT_MS: durationMs(100, 60_000).default(5000),
  /**
   * How long an Idempotency-Key (scoped to its customer) is honoured: a repeat within this window
   * replays the first order; the retention job may delete keys older than this.
   */
  IDEMPOTENCY_KEY_RETENTION_HOURS: intFrom(1, 24 * 90).default(24),

  /** How long the saga keeps retrying a gateway that is down before it gives up and compensates. */
  PAYMENT_DEADLINE_MS: durationMs(1000, 7 * 24 * 3600_000).default(10 * 60_000),
  /**
   * Bound on every payment gateway call (charge, void, refund), enforced even on a gateway that
   * ignores its abort signal; below the activities' 30 s start-to-close timeout, so an attempt gives
   * up (and is retried) before Temporal times it out.
   */
  PAYMENT_GATEWAY_TIMEOUT_MS: durationMs(100, 25_000).default(20_000),
  /** Simulated gateway: totals above this are declined (non-retryable). */
  PAYMENT_DECLINE_OVER: z.coerce.number().positive().default(10_000),
  /** Simulated gateway: customers with this id prefix are always declined. */
  PAYMENT_DECLINE_CUSTOMER_PREFIX: z.string().min(1).default('DECLINE'),
  /** Simulated gateway: probability (0..1) that a charge attempt fails transiently and is retried. */
  PAYMENT_TRANSIENT_FAILURE_RATE: z.coerce.number().min(0).max(1).default(0),
});

export type Config = Readonly<z.infer<typeof schema>>;

/** Every environment variable the system reads; docker-compose.yml is checked against this list. */
export const CONFIG_KEYS = Object.keys(schema.shape) as ReadonlyArray<keyof Config>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Parses and validates the environment once. Throws a `ConfigError` naming each variable to fix.
 * Empty strings count as unset, so `FOO= npm run up` falls back to the default.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Surrounding blanks dropped, and a blank value is unset like an empty one: a stray space in an
  // env file must not coerce to 0 (a timeout off, a random port) or become part of a login.
  const relevant = Object.fromEntries(
    CONFIG_KEYS.map((key) => [key, env[key]?.trim()] as const).filter(
      ([, value]) => value !== undefined && value !== '',
    ),
  );
  const parsed = schema.safeParse(relevant);
  const issues = parsed.success
    ? crossProblems(parsed.data)
    : parsed.error.issues.map((issue) => ({ key: String(issue.path[0]), message: issue.message }));
  if (!parsed.success || issues.length > 0) {
    const lines = issues.map(
      ({ key, message }) => `  ${key}=${JSON.stringify(redact(env[key]) ?? '(default)')}: ${message}`,
    );
    throw new ConfigError(`Invalid configuration; set these environment variables:\n${lines.join('\n')}`);
  }
  return Object.freeze(parsed.data);
}

type Parsed = z.infer<typeof schema>;
interface Problem {
  key: keyof Parsed;
  message: string;
}

/**
 * How long a copy of an event can still reach a consumer after the first one, besides an operator's
 * re-drive: a consumer's in-queue retries (up to the queue's broker-side delivery limit of 100, each
 * held at most 30 s: lib/amqp/topology.ts's DELIVERY_LIMIT_BACKSTOP and lib/amqp/consumer.ts's retry delay cap,
 * checked equal by test/unit/config-limits.test.ts) and the outbox's retry backoff cap (60 s) for a row confirmed but not yet
 * marked published.
 */
export const REDELIVERY_WINDOW_MS = 100 * 30_000 + 60_000;

/** The windows each retention setting must cover, in milliseconds, with what makes them up. */
export function duplicateWindows(config: Pick<Parsed, 'PAYMENT_DEADLINE_MS' | 'DLQ_REDRIVE_WINDOW_MS'>) {
  // A saga step retries (and rewrites its event, same id) until the payment deadline at the latest.
  const retry = config.PAYMENT_DEADLINE_MS;
  return {
    /** A duplicate delivery of an event: retried, redelivered, then dead-lettered and re-driven. */
    processedEvents: retry + REDELIVERY_WINDOW_MS + config.DLQ_REDRIVE_WINDOW_MS,
    /** A retried step writing its event again, or the publisher sending a row again. */
    outbox: retry + REDELIVERY_WINDOW_MS,
  };
}

/** Rules between settings, each naming the setting to change. */
function crossProblems(config: Parsed): Problem[] {
  const problems: Problem[] = [];
  const windows = duplicateWindows(config);
  const atLeast = (key: keyof Parsed, minMs: number, why: string) => {
    if ((config[key] as number) < minMs) {
      problems.push({
        key,
        message: `must be at least ${minMs} ms (${(minMs / 3600_000).toFixed(1)} h): ${why}`,
      });
    }
  };
  atLeast(
    'PROCESSED_EVENTS_RETENTION_MS',
    windows.processedEvents,
    'a duplicate of an event can still arrive that long after it (PAYMENT_DEADLINE_MS + redelivery + DLQ_REDRIVE_WINDOW_MS), and its dedupe record must still be there',
  );
  atLeast(
    'OUTBOX_RETENTION_MS',
    windows.outbox,
    'a retried saga step or the publisher may still write or send that event again within PAYMENT_DEADLINE_MS + redelivery',
  );
  if ((config.TEMPORAL_TLS_CERT_FILE === undefined) !== (config.TEMPORAL_TLS_KEY_FILE === undefined)) {
    problems.push({
      key: config.TEMPORAL_TLS_CERT_FILE === undefined ? 'TEMPORAL_TLS_CERT_FILE' : 'TEMPORAL_TLS_KEY_FILE',
      message: 'mTLS needs both TEMPORAL_TLS_CERT_FILE and TEMPORAL_TLS_KEY_FILE',
    });
  }
  if (config.NODE_ENV === 'production') {
    if (config.AUTH_JWKS_URL?.startsWith('http:'))
      problems.push({
        key: 'AUTH_JWKS_URL',
        message:
          'must be https:// when NODE_ENV=production: over plain HTTP anyone on the way can swap the keys and sign operator tokens',
      });
    for (const [key, url] of [
      ['DATABASE_URL', config.DATABASE_URL],
      ['AMQP_URL', config.AMQP_URL],
    ] as const) {
      const login = defaultLogin(url);
      if (login)
        problems.push({
          key,
          message: `uses the built-in default login ${login}, refused when NODE_ENV=production: give each service its own user (README, Least privilege)`,
        });
    }
  }
  // Every capture's event must get past the subscribers' amount check: the simulated gateway
  // captures totals up to PAYMENT_DECLINE_OVER, and larger ones would be dead-lettered unapplied.
  if (config.EVENT_MAX_AMOUNT < config.PAYMENT_DECLINE_OVER)
    problems.push({
      key: 'EVENT_MAX_AMOUNT',
      message: `must be at least PAYMENT_DECLINE_OVER (${config.PAYMENT_DECLINE_OVER}): payments up to that are captured, and the subscribers would dead-letter their events`,
    });
  // The publisher keeps its claiming transaction open while the broker confirms the batch.
  if (
    config.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS > 0 &&
    config.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS <= config.OUTBOX_PUBLISH_TIMEOUT_MS
  ) {
    problems.push({
      key: 'DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS',
      message: `must be 0 or above OUTBOX_PUBLISH_TIMEOUT_MS (${config.OUTBOX_PUBLISH_TIMEOUT_MS}): the outbox publisher holds its transaction while the broker confirms`,
    });
  }
  return problems;
}

/** Logins everyone knows: RabbitMQ's and PostgreSQL's built-in ones, and this repository's local one. */
const DEFAULT_LOGINS = ['guest:guest', 'postgres:postgres', 'acme:acme', 'postgres:'];

/** `user:password` when `url` logs in with a default login (a URL without one means guest for AMQP). */
function defaultLogin(url: string): string | undefined {
  try {
    const parsed = new URL(url);
    const user = decodeURIComponent(parsed.username);
    const login = `${user}:${decodeURIComponent(parsed.password)}`;
    if (parsed.protocol.startsWith('amqp') && user === '') return 'guest:guest (none given)';
    return DEFAULT_LOGINS.includes(login) ? login : undefined;
  } catch {
    return undefined;
  }
}

/** A URL's password never reaches a log or a terminal. */
function redact(value: string | undefined): string | undefined {
  return value?.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@/]*@/i, '$1***@');
}
