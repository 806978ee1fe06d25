// Unit checks for the status arithmetic: rates from successive snapshots, and summing workers' reports.

import { describe, expect, it } from 'vitest';
import { mergeProcessStatus, RateTracker } from '../../src/control/status.js';
import type { ProcessStatus } from '../../src/gateway/process-status.js';

const counts = (c: number, b: number) => ({ clientToBackend: c, backendToClient: b });

describe('RateTracker', () => {
  it('has no rate on the first snapshot, then averages over the span since the oldest kept one', () => {
    const rates = new RateTracker();
    expect(rates.observe(0, counts(0, 0), counts(0, 0))).toBeNull();
    expect(rates.observe(500, counts(50, 50), counts(5, 5))).toBeNull(); // under a second: not yet
    const r = rates.observe(2000, counts(2000, 4000), counts(20, 40));
    expect(r).toEqual({ bytes: counts(1000, 2000), messages: counts(10, 20), windowSeconds: 2 });
  });

  it('forgets samples older than the window but keeps one at least a second old', () => {
    const rates = new RateTracker();
    for (let t = 0; t <= 30_000; t += 1000) rates.observe(t, counts(t, 0), counts(0, 0));
    const r = rates.observe(31_000, counts(31_000, 0), counts(0, 0));
    expect(r?.windowSeconds).toBeLessThanOrEqual(RateTracker.MAX_WINDOW_MS / 1000 + 1);
    expect(r?.bytes.clientToBackend).toBeCloseTo(1000);
  });

  it('starts over when totals go down (a worker restarted)', () => {
    const rates = new RateTracker();
    rates.observe(0, counts(100, 100), counts(1, 1));
    expect(rates.observe(2000, counts(10, 10), counts(0, 0))).toBeNull();
  });
});

function report(pid: number, active: number, state: string): ProcessStatus {
  return {
    pid,
    generation: 2,
    draining: false,
    listeners: [{ name: 'public', address: '0.0.0.0', port: 8080, tls: false, selfSigned: false }],
    routes: [
      {
        name: 'chat',
        host: null,
        path: '/chat',
        pool: 'chat',
        active,
        connectionsTotal: active * 2,
        bytes: counts(active, active),
        messages: counts(1, 1),
      },
    ],
    pools: [
      {
        name: 'chat',
        hashKey: 'ip',
        balanceFactor: null,
        active,
        backends: [
          {
            id: 'ws://b:1',
            address: 'b:1',
            weight: 1,
            configuredWeight: 1,
            state,
            healthy: state !== 'unhealthy',
            ejected: false,
            adminState: 'active',
            active,
          },
        ],
      },
    ],
    connections: { active, total: active * 2 },
    bytes: counts(active, active),
    messages: counts(1, 1),
  };
}

describe('mergeProcessStatus', () => {
  it('sums counts over workers and shows a backend in its worst reported state, without touching the inputs', () => {
    const a = report(1, 3, 'healthy');
    const b = report(2, 4, 'unhealthy');
    const merged = mergeProcessStatus([a, b]);
    expect(merged.connections).toEqual({ active: 7, total: 14 });
    expect(merged.routes[0]).toMatchObject({
      active: 7,
      connectionsTotal: 14,
      bytes: counts(7, 7),
      messages: counts(2, 2),
    });
    expect(merged.pools[0]?.backends[0]).toMatchObject({ state: 'unhealthy', healthy: false, active: 7 });
    expect(merged.listeners).toHaveLength(1);
    expect(a.connections.active).toBe(3);
    expect('pid' in merged).toBe(false);
  });
});
