/** The server-side session limits every pool sets (db/pool.ts): enforced by PostgreSQL itself. */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createPool, isTransientDatabaseError, withTransaction, type Pool } from '../../db/pool.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
let pool: Pool;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = createPool(db.url, 3, 'acme-limits-test', {
    limits: { statementTimeoutMs: 300, lockTimeoutMs: 200, idleInTransactionTimeoutMs: 400 },
  });
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

describe('session limits', () => {
  test('are the server’s settings of every session of the pool', async () => {
    const { rows } = await pool.query<Record<string, string>>(
      `select current_setting('statement_timeout') as s, current_setting('lock_timeout') as l,
              current_setting('idle_in_transaction_session_timeout') as i`,
    );
    expect(rows[0]).toEqual({ s: '300ms', l: '200ms', i: '400ms' });
  });

  test('a statement running past statement_timeout is cancelled by the server (57014)', async () => {
    await expect(pool.query('select pg_sleep(2)')).rejects.toMatchObject({ code: '57014' });
  });

  test('a wait on a lock held elsewhere ends at lock_timeout (55P03), which counts as transient', async () => {
    const holder = await db.pool.connect();
    try {
      await holder.query('begin');
      await holder.query(`select 1 from products where sku = 'TSHIRT-BLK-M' for update`);
      const err = await withTransaction(pool, (tx) =>
        tx.query(`select 1 from products where sku = 'TSHIRT-BLK-M' for update`),
      ).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: '55P03' });
      expect(isTransientDatabaseError(err)).toBe(true);
    } finally {
      await holder.query('rollback');
      holder.release();
    }
  });

  test('a transaction left idle is ended by the server, and its client is not reused', async () => {
    const client = await pool.connect();
    let lost: Error | undefined;
    client.on('error', (err) => (lost = err));
    await client.query('begin');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await expect(client.query('select 1')).rejects.toThrow();
    client.release(lost ?? true);
    expect((await pool.query<{ one: number }>('select 1 as one')).rows[0]?.one).toBe(1);
  });
});
