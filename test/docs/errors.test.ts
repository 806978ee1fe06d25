// docs/errors.md's table is the catalogue: every entry with its status or close code, and nothing else.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Errors } from '../../src/errors.js';

const ERRORS_DOC = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'errors.md'), 'utf8');

describe('docs/errors.md error table', () => {
  const rows = new Map<string, string>();
  for (const line of ERRORS_DOC.split('\n')) {
    const m = /^\| (WSG_[A-Z_]+) \| ([^|]+) \|/.exec(line);
    if (m) rows.set(m[1] as string, (m[2] as string).trim());
  }

  it('lists every catalogue entry with its status or close code, and nothing else', () => {
    const expected = new Map<string, string>();
    for (const e of Object.values(Errors)) {
      expected.set(
        e.code,
        e.status !== undefined ? String(e.status) : e.closeCode !== undefined ? `close ${e.closeCode}` : '(exit 1)',
      );
    }
    expect(rows).toEqual(expected);
  });
});
