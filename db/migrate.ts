/**
 * A small migration runner over numbered plain-SQL files (`db/migrations/NNNNNN_name.sql`).
 *
 * Each file runs in its own transaction and is recorded in `schema_migrations`; a session-level
 * advisory lock lets several processes start at once without racing. It refuses to run against a
 * database that has migrations this code does not know (a newer schema), rather than guess.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_APP_ROLE, grantAppRole } from './access.js';
import { withClient, type Pool } from './pool.js';

export const MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');
const LOCK_KEY = 727_001; // arbitrary, constant: identifies "acme-orders migrations" among advisory locks

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{6}_[\w-]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => ({
      id: Number(file.slice(0, 6)),
      name: file.replace(/\.sql$/, ''),
      sql: await readFile(path.join(dir, file), 'utf8'),
    })),
  );
}

/**
 * Applies pending migrations; returns the names of those it applied. Then grants the app role
 * (`appRole`, when it exists) the rows of every table: db/access.ts.
 */
export async function migrate(
  pool: Pool,
  dir = MIGRATIONS_DIR,
  appRole = DEFAULT_APP_ROLE,
): Promise<string[]> {
  const migrations = await loadMigrations(dir);
  return withClient(pool, async (client) => {
    await client.query('select pg_advisory_lock($1)', [LOCK_KEY]);
    try {
      await client.query(`create table if not exists schema_migrations (
        id integer primary key, name text not null, applied_at timestamptz not null default now())`);
      const { rows } = await client.query<{ id: number }>('select id from schema_migrations order by id');
      const applied = new Set(rows.map((r) => r.id));
      const known = new Set(migrations.map((m) => m.id));
      const unknown = [...applied].filter((id) => !known.has(id));
      if (unknown.length > 0) {
        throw new Error(
          `Database has migrations ${unknown.join(', ')} that this code does not know: it was migrated by a newer version. Deploy that version (or a newer one) instead.`,
        );
      }
      const done: string[] = [];
      for (const m of migrations.filter((m) => !applied.has(m.id))) {
        await client.query('begin');
        try {
          await client.query(m.sql);
          await client.query('insert into schema_migrations (id, name) values ($1, $2)', [m.id, m.name]);
          await client.query('commit');
        } catch (err) {
          await client.query('rollback');
          throw new Error(`Migration ${m.name} failed: ${(err as Error).message}`, { cause: err });
        }
        done.push(m.name);
      }
      await grantAppRole(client, appRole);
      return done;
    } finally {
      await client.query('select pg_advisory_unlock($1)', [LOCK_KEY]);
    }
  });
}
