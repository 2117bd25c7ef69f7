/**
 * A progress bar for batches, on stderr, and only where someone watches it: not when stderr is
 * piped or redirected (a log file would fill with redraws), and not with --json.
 */
import { Presets, SingleBar } from 'cli-progress';
import type { ItemResult, Progress } from '../ops/result.js';

export interface ProgressBar extends Progress {
  stop(): void;
}

export function progressBar(label: string, { enabled }: { enabled: boolean }): ProgressBar {
  if (!enabled) return { start: () => undefined, advance: () => undefined, stop: () => undefined };
  const bar = new SingleBar(
    {
      format: `${label} [{bar}] {value}/{total} | {failed} refused or failed`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
    },
    Presets.shades_classic,
  );
  let started = false;
  let failed = 0;
  return {
    start(total) {
      if (started) bar.setTotal(total);
      else bar.start(total, 0, { failed });
      started = true;
    },
    advance(item: ItemResult) {
      if (!item.ok) failed++;
      bar.increment(1, { failed });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
