/**
 * Connection helpers. Every query runs through `withClient` or `withTransaction`, which always
 * release the client, so a thrown error can never leak a connection.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Config } from '../lib/config.js';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** Anything that can run a query: the pool itself or a client inside a transaction. */
export type Queryable = Pick<pg.Pool, 'query'> | pg.PoolClient;

/**
 * Limits the server enforces on every session of a pool, in milliseconds (0: none). Set in the
 * connection's startup packet, so they hold for every statement, including a transaction someone
 * forgot to end, whatever the client does afterwards.
 */
export interface SessionLimits {
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
}

/** The limits of `lib/config.ts`'s defaults, for pools made without a config (tests, tools). */
export const DEFAULT_SESSION_LIMITS: SessionLimits = Object.freeze({
  statementTimeoutMs: 30_000,
  lockTimeoutMs: 10_000,
  idleInTransactionTimeoutMs: 60_000,
});

export function sessionLimits(
  config: Pick<
    Config,
    'DATABASE_STATEMENT_TIMEOUT_MS' | 'DATABASE_LOCK_TIMEOUT_MS' | 'DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS'
  >,
): SessionLimits {
  return {
    statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
    lockTimeoutMs: config.DATABASE_LOCK_TIMEOUT_MS,
    idleInTransactionTimeoutMs: config.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS,
  };
}

/** A process's pool settings from its configuration: the session limits and prepared statements. */
export function poolSettings(
  config: Parameters<typeof sessionLimits>[0] & Pick<Config, 'DATABASE_PREPARED_STATEMENTS'>,
): { limits: SessionLimits; prepareStatements: boolean } {
  return { limits: sessionLimits(config), prepareStatements: config.DATABASE_PREPARED_STATEMENTS === 'on' };
}

/**
 * Most distinct statements one connection prepares. The app's statements are fixed texts (a few
 * hundred at most); past this, a text is sent unnamed, so a statement built from data (a bug) cannot
 * grow every connection's memory on the server without bound.
 */
const MAX_PREPARED_PER_CONNECTION = 1000;

/** SQLSTATE feature_not_supported: with a prepared statement, "cached plan must not change result type". */
const CACHED_PLAN_CHANGED = '0A000';

/**
 * A client that prepares each parameterised statement once per connection and from then on only
 * binds and executes it. PostgreSQL then parses and analyses the text once per connection instead of
 * at every call, and after five runs may keep a generic plan: `npm run bench` measured its CPU per
 * order at 12.3 → 8.3 ms (README "Performance"). Statements without parameters (`begin`, `commit`,
 * migrations' scripts of several statements) go as before. Off (DATABASE_PREPARED_STATEMENTS=off) for
 * a pooler in transaction mode that does not carry prepared statements across server connections
 * (PgBouncer before 1.21, or without `max_prepared_statements`).
 *
 * A statement's name is a hash of its text, the same on every connection and in every process: the
 * tracing's pg spans are named after it. A migration that changes the columns a prepared statement
 * returns makes PostgreSQL refuse it on connections that prepared it before (0A000, "cached plan must
 * not change result type"): that call fails, and the next one prepares the text again.
 */
class PreparingClient extends pg.Client {
  private readonly statementNames = new Map<string, string>();
  /** Names given up on this connection (below): each retired text gets a new one. */
  private retired = 0;

  statementName(text: string): string | undefined {
    let name = this.statementNames.get(text);
    if (name === undefined && this.statementNames.size < MAX_PREPARED_PER_CONNECTION) {
      name = `acme_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
      if (this.retired > 0) name += `_${this.retired}`;
      this.statementNames.set(text, name);
    }
    return name;
  }

  /**
   * The prepared statement cannot be used again: pg failed the call before the server answered (a
   * value it could not convert for the wire; it then closes the statement on the server but keeps it
   * as prepared on its side, so every later use would fail with 26000), or the server refused its
   * cached plan (0A000, above). The text is named afresh next time.
   */
  retire(text: string): void {
    this.statementNames.delete(text);
    this.retired += 1;
  }
}
// pg's query() has a dozen overloads; this one changes only `query(text, values, …)` into
// `query({ name, text }, values, …)`, which pg's normalisation accepts as the same call. pg's own
// query() is looked up at each call, not kept: tracing's pg instrumentation replaces it at start-up.
PreparingClient.prototype.query = function (this: PreparingClient, ...args: unknown[]) {
  const plainQuery = pg.Client.prototype.query as (...a: unknown[]) => unknown;
  const [text, values, callback] = args;
  if (typeof text !== 'string' || !Array.isArray(values) || values.length === 0) {
    return plainQuery.apply(this, args);
  }
  const name = this.statementName(text);
  if (name === undefined) return plainQuery.apply(this, args);
  // An error without a SQLSTATE is pg's own, raised before the server saw the values.
  const onError = (err: unknown) => {
    const code = (err as { code?: unknown } | null)?.code;
    if (typeof code !== 'string' || code === CACHED_PLAN_CHANGED) this.retire(text);
  };
  if (typeof callback === 'function') {
    return plainQuery.call(this, { name, text }, values, (err: unknown, result: unknown) => {
      if (err) onError(err);
      (callback as (e: unknown, r: unknown) => void)(err, result);
    });
  }
  return (plainQuery.call(this, { name, text }, values) as Promise<unknown>).catch((err: unknown) => {
    onError(err);
    throw err;
  });
} as typeof pg.Client.prototype.query;

// NUMERIC comes back as a string (exact money); BIGINT (20) as a string too, which we keep.
export function createPool(
  connectionString: string,
  max = 10,
  applicationName = 'acme-orders',
  {
    acquireTimeoutMs = 10_000,
    limits = DEFAULT_SESSION_LIMITS,
    prepareStatements = true,
  }: { acquireTimeoutMs?: number; limits?: SessionLimits; prepareStatements?: boolean } = {},
): Pool {
  const pool = new pg.Pool({
    ...(prepareStatements ? { Client: PreparingClient } : {}),
    connectionString,
    max,
    application_name: applicationName,
    statement_timeout: limits.statementTimeoutMs,
    lock_timeout: limits.lockTimeoutMs,
    idle_in_transaction_session_timeout: limits.idleInTransactionTimeoutMs,
    // A server that stops answering (a dead host, a half-open connection) fails fast and is retried
    // by the caller, instead of hanging a loop, a consumer or a shutdown for minutes. The same limit
    // bounds the wait for a free client when every one is busy (pg-pool applies it to both).
    connectionTimeoutMillis: acquireTimeoutMs,
    keepAlive: true,
    query_timeout: 60_000,
  });
  // An idle client that loses its server emits 'error' on the pool; without a listener Node crashes.
  pool.on('error', () => {});
  return pool;
}

export async function withClient<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // A checked-out client whose server dies while we await something else (a publish confirm, an
  // RPC) emits 'error' on itself, not on a query: unhandled, that would crash the process. The next
  // query fails instead, the transaction rolls back, and the broken client is destroyed on release.
  let lost: Error | undefined;
  const onError = (err: Error) => (lost = err);
  client.on('error', onError);
  try {
    return await fn(client);
  } finally {
    client.off('error', onError);
    client.release(lost);
  }
}

export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (client) => {
    await client.query('begin');
    try {
      const result = await fn(client);
      await client.query('commit');
      return result;
    } catch (err) {
      await client.query('rollback').catch(() => {});
      throw err;
    }
  });
}

/**
 * Runs `fn` in a transaction that is always rolled back: what a dry run of a change reports (the
 * rows it would touch, counted by the very statements that would touch them), changing nothing.
 */
export async function withRolledBackTransaction<T>(
  pool: Pool,
  fn: (client: PoolClient) => Promise<T>,
): Promise<T> {
  return withClient(pool, async (client) => {
    await client.query('begin');
    try {
      return await fn(client);
    } finally {
      await client.query('rollback').catch(() => {});
    }
  });
}

/**
 * Raises the session's idle-in-transaction limit (DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS) to `ms`
 * for the rest of this transaction, for a caller that holds a row lock on purpose while it waits on
 * another service under a deadline of its own (`ms` a margin above it): the usual limit would end the
 * wait by killing the session, freeing the lock while the caller still counts on it; no limit at all
 * would let a caller that froze (a closed laptop) hold the row for hours.
 */
export async function holdLocksWhileIdle(tx: Queryable, ms: number): Promise<void> {
  await tx.query(`select set_config('idle_in_transaction_session_timeout', $1, true)`, [String(ms)]);
}

/** The cheapest round trip that proves the server answers (readiness probes). */
export async function ping(pool: Pool): Promise<void> {
  await pool.query('select 1');
}

/** SQLSTATEs worth a retry of the whole transaction: serialization failure and deadlock. */
export function isRetryableSqlError(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code === '40001' || code === '40P01';
}

/**
 * SQLSTATE class 22, data exception: PostgreSQL refused the value itself (a NUL byte in text, a
 * character it cannot store, a number out of range). Retrying the same statement cannot succeed.
 */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length === 5 && code.startsWith('22');
}

export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const e = err as { code?: string; constraint?: string } | null;
  return e?.code === '23505' && (constraint === undefined || e.constraint === constraint);
}

/**
 * True when a query failed because the database was unreachable, restarting or shedding load (or a
 * retryable conflict), so the same work may succeed later: a reason to wait, not to give up.
 */
export function isTransientDatabaseError(err: unknown): boolean {
  if (isRetryableSqlError(err)) return true;
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  return (
    code.startsWith('08') || // connection exception
    ['57P01', '57P02', '57P03', '53300'].includes(code) || // shutting down, cannot connect now, too many clients
    code === '55P03' || // lock_timeout: a lock held elsewhere, not a fault of this work
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE'].includes(code) ||
    (typeof e?.message === 'string' && /Connection terminated/i.test(e.message)) ||
    isPoolExhausted(err)
  );
}

/**
 * pg-pool's own error when no client became free (or none could connect) within
 * `connectionTimeoutMillis`: every connection is busy, so the work may well succeed a moment later.
 */
export function isPoolExhausted(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  return (
    e?.code === undefined &&
    typeof e?.message === 'string' &&
    /^timeout exceeded when trying to connect$/i.test(e.message)
  );
}
