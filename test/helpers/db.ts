/**
 * A fresh, migrated PostgreSQL database per test file, cloned from a template that globalSetup
 * migrates once (cloning takes milliseconds; migrating each time would not). Tests never share
 * rows, so they cannot depend on each other's order.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../../lib/config.js';
import { MIGRATIONS_DIR } from '../../db/migrate.js';
import { createPool, type Pool } from '../../db/pool.js';

export const SEED_FILE = new URL('../../db/seed.sql', import.meta.url);
export const TEMPLATE_PREFIX = 'acme_test_template_';

/**
 * The template's name carries a hash of the migrations and seed: a schema change gets a new
 * template, and a template, once created, is never modified (cloning needs it untouched).
 */
export const TEMPLATE_DB = (() => {
  const hash = createHash('sha256');
  for (const file of readdirSync(MIGRATIONS_DIR).sort())
    hash.update(readFileSync(path.join(MIGRATIONS_DIR, file)));
  hash.update(readFileSync(SEED_FILE));
  // The app role's grants are part of the template (db/access.ts): a change to them, a new template.
  hash.update(readFileSync(new URL('../../db/access.ts', import.meta.url)));
  return TEMPLATE_PREFIX + hash.digest('hex').slice(0, 12);
})();

export function databaseUrl(name: string, base = loadConfig().DATABASE_URL): string {
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: loadConfig().DATABASE_URL });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  name: string;
  url: string;
  pool: Pool;
  /** Closes the pool (failing if a client was never released) and drops the database. */
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `acme_test_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  try {
    await adminQuery(`create database ${name} template ${TEMPLATE_DB}`);
  } catch (err) {
    // 3D000: the template is gone. A run of code with other migrations (another checkout on the same
    // server) dropped it as "older"; build it again rather than fail every test file after that.
    if ((err as { code?: string }).code !== '3D000') throw err;
    const { default: buildTemplate } = await import('./global-setup.js');
    await buildTemplate();
    await adminQuery(`create database ${name} template ${TEMPLATE_DB}`);
  }
  const url = databaseUrl(name);
  const pool = createPool(url, 20, 'acme-test');
  return {
    name,
    url,
    pool,
    async drop() {
      const leaked = pool.totalCount - pool.idleCount;
      await pool.end();
      await dropDatabase(name);
      if (leaked > 0) throw new Error(`${leaked} database client(s) were never released`);
    },
  };
}

/**
 * A plain DROP DATABASE waits (briefly) for an autovacuum worker to leave by itself; WITH (FORCE)
 * would instead need the right to signal it, which the app's role does not have. Anything else
 * still connected after the retries is a connection the test leaked: then force it, and say so.
 */
async function dropDatabase(name: string): Promise<void> {
  for (let attempt = 1; attempt <= 10; attempt++) {
    try {
      await adminQuery(`drop database if exists ${name}`);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '55006') throw err; // 55006: object in use
      await new Promise((resolve) => setTimeout(resolve, 300 * attempt));
    }
  }
  await adminQuery(`drop database if exists ${name} with (force)`);
  throw new Error(`database ${name} still had connections after the test: something was not closed`);
}

/** Adds a product with its own SKU so a test owns its stock. */
export async function createProduct(
  pool: Pool,
  fields: { stock: number; price?: string; sku?: string },
): Promise<string> {
  const sku = fields.sku ?? `TEST-${randomUUID().slice(0, 8).toUpperCase()}`;
  await pool.query(
    'insert into products (sku, name, price, currency, stock_qty) values ($1, $2, $3::numeric, $4, $5)',
    [sku, `Test product ${sku}`, fields.price ?? '10.00', 'USD', fields.stock],
  );
  return sku;
}
