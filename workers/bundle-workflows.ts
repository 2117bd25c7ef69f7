/**
 * Bundles workflows/ into one file: `node --import tsx workers/bundle-workflows.ts <out.js>` (or
 * `node dist/workers/bundle-workflows.js <out.js>`, compiled by `npm run build`).
 *
 * The worker runs this in a child process (`bundleInChildProcess`) instead of bundling in its own:
 * webpack's compilation leaves ~90 MB in the process that ran it (measured: worker RSS 321 MB when
 * bundling itself, 230 MB when loading a bundle built elsewhere), and the worker holds that for its
 * whole life. The bundle is still made from the code being deployed, at every start, so it can never
 * be stale.
 */
import { execFile } from 'node:child_process';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { bundleWorkflowCode } from '@temporalio/worker';

const THIS_SCRIPT = fileURLToPath(import.meta.url);
/** Run from the sources (tsx, vitest) or compiled (dist/): the workflows are bundled from the same. */
const COMPILED = THIS_SCRIPT.endsWith('.js');
export const WORKFLOWS_PATH = fileURLToPath(
  new URL(COMPILED ? '../workflows/index.js' : '../workflows/index.ts', import.meta.url),
);

/**
 * Writes the bundle to `out` (atomically: a reader never sees half a file), with the workflow
 * interceptor modules given (tracing's).
 */
export async function writeWorkflowBundle(out: string, interceptorModules: string[] = []): Promise<void> {
  const { code } = await bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    workflowInterceptorModules: interceptorModules,
    logger: quietBundlerLogger,
  });
  const partial = `${out}.${process.pid}.partial`;
  await writeFile(partial, code);
  await rename(partial, out);
}

/** Builds the bundle in a child process and returns its path, for `workflowBundle: { codePath }`. */
export async function bundleInChildProcess(out: string, interceptorModules: string[] = []): Promise<string> {
  const loader = COMPILED ? [] : ['--import', 'tsx'];
  await promisify(execFile)(process.execPath, [...loader, THIS_SCRIPT, out, ...interceptorModules], {
    cwd: path.dirname(path.dirname(THIS_SCRIPT)), // where `--import tsx` is resolved from
    maxBuffer: 16 * 1024 * 1024,
  });
  return out;
}

/** The bundler's logger: its progress chatter dropped, its warnings and errors kept. */
export const quietBundlerLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string) => console.warn(message),
  error: (message: string) => console.error(message),
};

if (process.argv[1] && path.resolve(process.argv[1]) === THIS_SCRIPT) {
  const [out, ...interceptorModules] = process.argv.slice(2);
  if (!out) {
    console.error('usage: node --import tsx workers/bundle-workflows.ts <out.js> [interceptor-module…]');
    process.exit(2);
  }
  writeWorkflowBundle(out, interceptorModules).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
