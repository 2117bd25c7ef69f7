/**
 * The app role's rights (README, Least privilege): every app process logs in as a role that reads and
 * writes rows and can change no schema; the schema belongs to the role that runs the migrations.
 * Granted again after every migration run, so a table a migration adds is the app's to use at once,
 * in every database migrated here (the local one, and the tests' template, from which each test's
 * database is cloned with these grants).
 */
import type { Queryable } from './pool.js';

/** The app's role in the local setup (scripts/provision-access.sh); a deployment may name its own. */
export const DEFAULT_APP_ROLE = 'acme_app';

/** Grants `role` the rows of every table and the sequences; false (nothing done) when no such role exists. */
export async function grantAppRole(db: Queryable, role = DEFAULT_APP_ROLE): Promise<boolean> {
  const { rows } = await db.query<{ quoted: string }>(
    'select quote_ident(rolname) as quoted from pg_roles where rolname = $1',
    [role],
  );
  const quoted = rows[0]?.quoted;
  if (!quoted) return false;
  await db.query(`grant usage on schema public to ${quoted}`);
  await db.query(`grant select, insert, update, delete on all tables in schema public to ${quoted}`);
  await db.query(`grant usage, select on all sequences in schema public to ${quoted}`);
  // Not its to change: the migrations' own record.
  await db.query(`revoke insert, update, delete on schema_migrations from ${quoted}`);
  return true;
}
