/** The README's reference tables are kept true by the code they describe. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS, loadConfig } from '../../lib/config.js';
import { EVENT_TYPES } from '../../lib/events.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const tableRows = readme.split('\n').filter((line) => line.startsWith('| `'));

describe('README', () => {
  it('lists every event of the catalogue', () => {
    for (const type of EVENT_TYPES)
      expect(
        tableRows.some((row) => row.startsWith(`| \`${type}\``)),
        type,
      ).toBe(true);
  });

  it('lists every configuration variable with its real default', () => {
    const defaults = loadConfig({});
    for (const key of CONFIG_KEYS) {
      const row = tableRows.find((r) => r.startsWith(`| \`${key}\``));
      expect(row, key).toBeDefined();
      // An optional setting with no default reads "(unset)".
      expect(row, key).toContain(defaults[key] === undefined ? '(unset)' : `\`${String(defaults[key])}\``);
    }
  });

  it('shows the two commands, and package.json defines them', () => {
    const scripts = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).scripts;
    expect(readme).toContain('```bash\nnpm run up\n```');
    expect(readme).toContain('```bash\nnpm run test:all\n```');
    expect(scripts.up).toBeDefined();
    expect(scripts['test:all']).toBeDefined();
  });
});
