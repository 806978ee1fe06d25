// README promises that the code keeps: the error table is the catalogue, and every exported metric is listed.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Errors } from '../../src/errors.js';
import { startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';

const README = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');

describe('README error table', () => {
  const rows = new Map<string, string>();
  for (const line of README.split('\n')) {
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
