/** `tsx db/cli.ts migrate|seed`: applies migrations, or migrations plus the seed catalogue. */
import { readFile } from 'node:fs/promises';
import { loadConfig } from '../lib/config.js';
import { migrate } from './migrate.js';
import { createPool, sessionLimits } from './pool.js';

const SEED_FILE = new URL('./seed.sql', import.meta.url);

async function main(command: string | undefined): Promise<void> {
  if (command !== 'migrate' && command !== 'seed') {
    throw new Error('usage: tsx db/cli.ts migrate|seed');
  }
  const config = loadConfig();
  // A migration may rightly run longer than any request (an index build, a backfill): no statement
  // timeout; but it must not queue behind a long lock and stall the traffic queued behind it.
  const pool = createPool(config.DATABASE_URL, 1, 'acme-migrate', {
    limits: { ...sessionLimits(config), statementTimeoutMs: 0 },
  });
  try {
    const applied = await migrate(pool);
    console.log(applied.length ? `applied migrations: ${applied.join(', ')}` : 'schema is up to date');
    if (command === 'seed') {
      await pool.query(await readFile(SEED_FILE, 'utf8'));
      console.log('seed catalogue applied');
    }
  } finally {
    await pool.end();
  }
}

main(process.argv[2]).catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
