/**
 * The one result shape every operator command returns, so the CLI prints, exits and emits JSON the
 * same way for all of them, and tests assert on data instead of on printed text.
 */

/** What happened to one selected thing (an order's run, a dead-lettered message). */
export interface ItemResult {
  /** The order id, or the message id: what an operator would paste into the next command. */
  id: string;
  /** True when the item ended as the command asked; false when it was refused or failed. */
  ok: boolean;
  /** A short, stable word for scripts: `replayed`, `non-deterministic`, `reset`, `refused`, … */
  outcome: string;
  /** Why it is not ok (or a note about how it went), phrased so the reader knows what to do. */
  reason?: string;
  details?: Record<string, unknown>;
}

export interface CommandResult {
  command: string;
  /** Every item ok. A command that selected nothing is ok: there was nothing to refuse. */
  ok: boolean;
  items: ItemResult[];
}

export function commandResult(command: string, items: ItemResult[]): CommandResult {
  return { command, ok: items.every((item) => item.ok), items };
}

/** Called once per finished item, for a progress bar; the total is known before the first call. */
export interface Progress {
  start(total: number): void;
  advance(item: ItemResult): void;
}

export const noProgress: Progress = { start: () => undefined, advance: () => undefined };

/**
 * A mistake in how the command was called (no selection, two selections, an unknown queue): the CLI
 * answers it with exit code 2. The message says what to type instead.
 */
export class UsageError extends Error {
  override name = 'UsageError';
}
