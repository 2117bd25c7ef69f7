/** `orders replay --save`: the file a history is saved to stays inside the folder given. */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileSafe } from '../../ops/replay.js';

describe('a workflow id as a file name', () => {
  it('keeps an order saga’s id as it is', () => {
    expect(fileSafe('order-0b8e5a8e-3c1a-4d0e-9a51-2f1f6a7c9d10')).toBe(
      'order-0b8e5a8e-3c1a-4d0e-9a51-2f1f6a7c9d10',
    );
  });

  it('cannot leave the folder, whatever id a hand-started run was given', () => {
    for (const id of ['../../etc/x', '/abs/path', 'a/b', '..', '.', '', 'C:\\win', 'x\u0000y']) {
      const name = fileSafe(id);
      expect(name, id).toMatch(/^[A-Za-z0-9_][A-Za-z0-9._-]*$/);
      expect(path.dirname(path.join('/saved', `${name}.json`)), id).toBe('/saved');
    }
  });
});
