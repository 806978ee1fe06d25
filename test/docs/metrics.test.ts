// docs/metrics.md names every metric the gateway exports.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';

const METRICS_DOC = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'metrics.md'), 'utf8');

describe('docs/metrics.md metrics table', () => {
  let backend: TestBackend;
  let gw: TestGateway;
  beforeAll(async () => {
    backend = await startEchoBackend('metrics');
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
    const missing = [...exported].filter((name) => !METRICS_DOC.includes(`\`${name}\``));
    expect(missing).toEqual([]);
  });
});
