// docs/errors.md's table is the catalogue: every entry, before and after the 101, with its status or close code,
// and nothing else; and every entry is emitted by the code.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Ending, Endings, Errors } from '../../src/errors.js';
import { ROOT } from '../helpers/paths.js';

const ERRORS_DOC = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8');
const SRC = join(ROOT, 'src');

describe('docs/errors.md error table', () => {
  const rows = new Map<string, string>();
  for (const line of ERRORS_DOC.split('\n')) {
    const m = /^\| (WSG_[A-Z_]+) \| ([^|]+) \|/.exec(line);
    if (m) rows.set(m[1] as string, (m[2] as string).trim());
  }

  /** The table's second column for an ending: the close code the proxy sends for it, if it sends one. */
  function closeColumn(e: Ending): string {
    const code = e.closeCode || e.backendCloseCode;
    if (code !== 0) return `close ${code}`;
    return e.initiator === 'proxy' ? '(connection cut)' : "(the peer's code)";
  }

  /** Refusals without a status of their own. */
  const NO_STATUS: Readonly<Record<string, string>> = {
    WSG_BACKEND_REFUSED: "(the backend's)",
    WSG_CONFIG_INVALID: '(exit 1)',
  };

  it('lists every catalogue entry with its status or close code, before and after the 101, and nothing else', () => {
    const expected = new Map<string, string>();
    for (const e of Object.values(Errors)) {
      expected.set(e.code, e.status !== undefined ? String(e.status) : (NO_STATUS[e.code] ?? 'no status'));
    }
    for (const e of Object.values(Endings)) {
      // Endings documented as one row (every protocol violation) share their close code.
      expect([e.code, expected.get(e.code) ?? closeColumn(e)]).toEqual([e.code, closeColumn(e)]);
      expected.set(e.code, closeColumn(e));
    }
    expect(rows).toEqual(expected);
  });

  it('every catalogue entry is emitted: some module outside the catalogue uses it', () => {
    const sources: string[] = [];
    for (const file of readdirSync(SRC, { recursive: true, encoding: 'utf8' })) {
      if (file.endsWith('.ts') && file !== 'errors.ts') sources.push(readFileSync(join(SRC, file), 'utf8'));
    }
    const unused: string[] = [];
    for (const [catalogue, entries] of [
      ['Errors', Errors],
      ['Endings', Endings],
    ] as const) {
      for (const name of Object.keys(entries)) {
        const use = new RegExp(`\\b${catalogue}\\.${name}\\b`);
        if (!sources.some((text) => use.test(text))) unused.push(`${catalogue}.${name}`);
      }
    }
    expect(unused).toEqual([]);
  });
});
