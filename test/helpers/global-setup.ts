/**
 * Runs before the workflow and integration projects: makes sure the template database for the
 * current migrations exists, so every test file clones a current schema in milliseconds.
 *
 * Safe when two projects (or two runs, or two checkouts) do it at once: each builds a private database
 * and renames it into place; the loser of the rename drops its copy. A template is never altered after
 * creation, nor dropped by a run of another schema.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { migrate } from '../../db/migrate.js';
import { createPool } from '../../db/pool.js';
import { SEED_FILE, TEMPLATE_DB, TEMPLATE_PREFIX, adminQuery, databaseUrl } from './db.js';

export default async function setup(): Promise<void> {
  const existing = await adminQuery<{ datname: string }>(
    'select datname from pg_database where datname like $1',
    [`${TEMPLATE_PREFIX}%`],
  );
  if (existing.some((row) => row.datname === TEMPLATE_DB)) return;

  const building = `acme_test_build_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  await adminQuery(`create database ${building}`);
  const pool = createPool(databaseUrl(building), 1, 'acme-test-setup');
  try {
    await migrate(pool);
    await pool.query(await readFile(SEED_FILE, 'utf8'));
  } finally {
    await pool.end();
  }
  try {
    await adminQuery(`alter database ${building} rename to ${TEMPLATE_DB}`);
  } catch {
    await adminQuery(`drop database if exists ${building}`); // another run won the race
  }
  // Templates of other schemas are left alone: another checkout of this repository (a branch with a
  // new migration) may be cloning from one right now. Each is a few MB; stale ones can be dropped
  // by hand (`select datname from pg_database where datname like 'acme_test_template%'`).
}
