/**
 * Printing a CommandResult: the JSON alone with --json (for jq and scripts), otherwise one line per
 * item and a summary, the reasons of refused and failed items spelled out underneath.
 */
import { printable, printableJsonLine } from '../domain/text.js';
import type { CommandResult, ItemResult } from '../ops/result.js';

/** The part of an item's line after its id and outcome, per command (run ids, counts, where it went). */
export type ItemSummary = (item: ItemResult) => string | undefined;

/** JSON.stringify escapes C0 controls only; DEL, C1 and bidi overrides are escaped too (still JSON). */
export function formatJson(result: CommandResult): string {
  return `${printableJsonLine(JSON.stringify(result, null, 2))}\n`;
}

export function formatHuman(result: CommandResult, summarize: ItemSummary = () => undefined): string {
  const lines: string[] = [];
  for (const item of result.items) {
    const summary = summarize(item);
    lines.push(
      printable(`${item.ok ? 'ok  ' : 'FAIL'} ${item.id}  ${item.outcome}${summary ? `  ${summary}` : ''}`),
    );
    if (item.reason) lines.push(`     ${printable(item.reason)}`);
  }
  const bad = result.items.filter((item) => !item.ok).length;
  lines.push(
    result.items.length === 0
      ? `${result.command}: nothing selected`
      : `${result.command}: ${result.items.length} item(s), ${result.items.length - bad} ok, ${bad} refused or failed`,
  );
  return `${lines.join('\n')}\n`;
}

/** `key=value` pairs for the details worth a glance, skipping the absent ones. */
export function pairs(details: Record<string, unknown> | undefined, keys: readonly string[]): string {
  return keys
    .filter((key) => details?.[key] !== undefined && details[key] !== null && details[key] !== '')
    .map((key) => `${key}=${String(details![key])}`)
    .join(' ');
}
