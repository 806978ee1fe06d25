// The short soak inside `npm test`: a few thousand connections over every way a connection ends, then the
// gateway child's fds, handles, heap after GC and active gauges must be back at baseline. `npm run soak` is the
// long one (see soak.ts).

import { describe, expect, it } from 'vitest';
import { runSoak, soakProblems } from './soak-run.js';

describe('short soak', () => {
  it('15000 connections (normal, refused, 1008, 1014, aborted): nothing leaks', async () => {
    const report = await runSoak({ connections: 15_000, concurrency: 32 });
    expect(report.unexpectedSamples).toEqual([]);
    expect(soakProblems(report, 16 * 1024 * 1024)).toEqual([]);
    for (const r of Object.values(report.perKind)) expect(r.ok).toBe(3000);
  }, 90_000);
});
