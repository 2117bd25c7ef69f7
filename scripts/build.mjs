/**
 * `npm run build`: the app's TypeScript as plain JavaScript in dist/, one .js per .ts in the same
 * layout, so the long-running processes run on `node` alone (`node dist/api/main.js`).
 *
 * Why: `node --import tsx` keeps a module-loader thread (a V8 isolate of its own) and its transform
 * caches in every process for its whole life, about 40 MB of RSS each (measured: the same imports
 * hold 143 MB under tsx, 106 MB under plain node). Types are not checked here (`npm run typecheck`
 * does that); esbuild only strips them, in well under a second. Tests and one-shot CLIs keep running
 * the sources through tsx and vitest.
 *
 * Written next to dist/ and swapped in, so a process starting meanwhile never sees half a tree.
 */
import { cp, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
/** What the app processes import; test/ and bench/ are not deployed. */
const SOURCE_DIRS = [
  'domain',
  'workflows',
  'activities',
  'workers',
  'api',
  'db',
  'lib',
  'subscribers',
  'cli',
  'ops',
];
/** Read at run time next to the code that reads them (db/migrate.ts, db/cli.ts). */
const ASSETS = ['db/migrations', 'db/seed.sql'];

async function sources(dir) {
  const entries = await readdir(path.join(ROOT, dir), { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

const out = path.join(ROOT, 'dist');
const partial = path.join(ROOT, `dist.partial.${process.pid}`);
await rm(partial, { recursive: true, force: true });
await build({
  entryPoints: (await Promise.all(SOURCE_DIRS.map(sources))).flat(),
  outdir: partial,
  outbase: ROOT,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  logLevel: 'warning',
});
for (const asset of ASSETS) await cp(path.join(ROOT, asset), path.join(partial, asset), { recursive: true });
// Moved aside, not deleted first: the tree is missing only between two renames.
const old = path.join(ROOT, `dist.old.${process.pid}`);
await rename(out, old).catch((err) => {
  if (err.code !== 'ENOENT') throw err;
});
await rename(partial, out);
await rm(old, { recursive: true, force: true });
