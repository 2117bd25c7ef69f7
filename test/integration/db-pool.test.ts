/** Prepared statements (db/pool.ts): each connection prepares a parameterised statement once. */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../../lib/config.js';
import { createPool, poolSettings, withClient, type Pool, type PoolClient } from '../../db/pool.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
let prepared: Pool;
let plain: Pool;

beforeAll(async () => {
  db = await createTestDatabase();
  prepared = createPool(db.url, 2, 'acme-pool-test');
  plain = createPool(db.url, 2, 'acme-pool-test-plain', { prepareStatements: false });
});
afterAll(async () => {
  await prepared?.end();
  await plain?.end();
  await db?.drop();
});

const STATEMENT = 'select sku, stock_qty from products where sku = $1';

/** The statements this session has prepared, by their text. */
async function preparedTexts(client: PoolClient): Promise<string[]> {
  const { rows } = await client.query<{ statement: string }>(
    'select statement from pg_prepared_statements order by prepare_time',
  );
  return rows.map((r) => r.statement);
}

describe('prepared statements', () => {
  test('a parameterised statement is prepared once per connection and answers as before', async () => {
    await withClient(prepared, async (client) => {
      const first = await client.query(STATEMENT, ['MUG-WHT']);
      const second = await client.query(STATEMENT, ['HOODIE-NVY-L']);
      expect(first.rows).toEqual([{ sku: 'MUG-WHT', stock_qty: expect.any(Number) }]);
      expect(second.rows).toEqual([{ sku: 'HOODIE-NVY-L', stock_qty: expect.any(Number) }]);
      expect(await preparedTexts(client)).toEqual([STATEMENT]);
    });
  });

  test('through the pool too (pool.query hands the client a callback)', async () => {
    const { rows } = await prepared.query<{ n: number }>('select $1::int + 1 as n', [41]);
    expect(rows).toEqual([{ n: 42 }]);
  });

  test('off, nothing is prepared', async () => {
    await withClient(plain, async (client) => {
      await client.query(STATEMENT, ['MUG-WHT']);
      await client.query(STATEMENT, ['MUG-WHT']);
      expect(await preparedTexts(client)).toEqual([]);
    });
  });

  test('statements without parameters go unprepared: several in one text still run', async () => {
    await withClient(prepared, async (client) => {
      await client.query('select 1; select 2');
      expect(await preparedTexts(client)).not.toContain('select 1; select 2');
    });
  });

  test('a statement PostgreSQL refuses to parse is refused the same way every time, and the connection goes on', async () => {
    await withClient(prepared, async (client) => {
      const broken = 'select sku from products wher sku = $1';
      await expect(client.query(broken, ['MUG-WHT'])).rejects.toMatchObject({ code: '42601' });
      await expect(client.query(broken, ['MUG-WHT'])).rejects.toMatchObject({ code: '42601' });
      expect((await client.query(STATEMENT, ['MUG-WHT'])).rowCount).toBe(1);
    });
  });

  test('a value the statement cannot take fails as a data error, and the prepared statement stays usable', async () => {
    await withClient(prepared, async (client) => {
      const byId = 'select id from orders where id = $1::uuid';
      await expect(client.query(byId, ['not-a-uuid'])).rejects.toMatchObject({ code: '22P02' });
      expect((await client.query(byId, ['00000000-0000-4000-8000-000000000000'])).rowCount).toBe(0);
      expect(await preparedTexts(client)).toContain(byId);
    });
  });

  test('a value pg cannot send fails that call alone: the statement goes on working on the connection', async () => {
    await withClient(prepared, async (client) => {
      const bySku = 'select sku, $2::jsonb as extra from products where sku = $1';
      expect((await client.query(bySku, ['MUG-WHT', null])).rowCount).toBe(1);
      // pg cannot serialise a BigInt inside a JSON value: it fails before the server sees the call.
      await expect(client.query(bySku, ['MUG-WHT', { n: 1n }])).rejects.toThrow(/BigInt/);
      expect((await client.query(bySku, ['MUG-WHT', null])).rowCount).toBe(1);
      // The same through the pool's callback form.
      expect((await prepared.query(bySku, ['HOODIE-NVY-L', null])).rowCount).toBe(1);
    });
  });

  test('a migration that changes what a prepared statement returns fails one call, then it is prepared again', async () => {
    await db.pool.query('create table pool_test_rows (id int primary key, a text)');
    await db.pool.query(`insert into pool_test_rows values (1, 'one')`);
    await withClient(prepared, async (client) => {
      const byId = 'select * from pool_test_rows where id = $1';
      expect((await client.query(byId, [1])).rows).toEqual([{ id: 1, a: 'one' }]);
      await db.pool.query('alter table pool_test_rows add column b int');
      await expect(client.query(byId, [1])).rejects.toMatchObject({ code: '0A000' });
      expect((await client.query(byId, [1])).rows).toEqual([{ id: 1, a: 'one', b: null }]);
    });
  });

  test('a statement has the same name on every connection, so its trace spans group together', async () => {
    const names = async (pool: Pool) =>
      withClient(pool, async (client) => {
        await client.query(STATEMENT, ['MUG-WHT']);
        const { rows } = await client.query<{ name: string }>(
          'select name from pg_prepared_statements where statement = $1',
          [STATEMENT],
        );
        return rows.map((r) => r.name);
      });
    const other = createPool(db.url, 1, 'acme-pool-test-other');
    try {
      const [here] = await names(prepared);
      expect(here).toMatch(/^acme_[0-9a-f]{24}$/);
      expect(await names(other)).toEqual([here]);
    } finally {
      await other.end();
    }
  });

  test('DATABASE_PREPARED_STATEMENTS turns it on (the default) and off for every process', () => {
    expect(poolSettings(loadConfig({})).prepareStatements).toBe(true);
    expect(poolSettings(loadConfig({ DATABASE_PREPARED_STATEMENTS: 'off' })).prepareStatements).toBe(false);
  });
});
