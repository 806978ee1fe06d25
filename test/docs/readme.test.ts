// README promises that the code keeps: the error table is the catalogue (every entry of which the code emits), and
// every exported metric is listed.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Ending, Endings, Errors } from '../../src/errors.js';
import { startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { ROOT } from '../helpers/paths.js';

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const SRC = join(ROOT, 'src');

describe('README error table', () => {
  const rows = new Map<string, string>();
  for (const line of README.split('\n')) {
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

describe('README metrics table', () => {
  let backend: TestBackend;
  let gw: TestGateway;
  beforeAll(async () => {
    backend = await startEchoBackend('readme');
    gw = await startGateway(simpleConfig([backend.url]));
  });
  afterAll(async () => {
    await gw.stop();
    await backend.close();
  });

  it('names every wsgate_ metric the gateway exports', async () => {
    const exported = new Set<string>();
    for (const line of (await gw.metrics()).split('\n')) {
      const m = /^# TYPE (wsgate_[a-z_]+) /.exec(line);
      if (m) exported.add(m[1] as string);
    }
    expect(exported.size).toBeGreaterThan(10);
    const missing = [...exported].filter((name) => !README.includes(`\`${name}\``));
    expect(missing).toEqual([]);
  });
});
