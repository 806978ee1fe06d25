// Pool state: panic threshold, passive ejection with back-off, unhealthy members' tunnels, reload via update(),
// and the pinned metrics.

import { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { HealthCheckConfig } from '../../src/config/types.js';
import { Member } from '../../src/pool/member.js';
import { ejectionMs, recordFailure } from '../../src/pool/outlier.js';
import { membersOutOfRing, Pool } from '../../src/pool/pool.js';
import { PoolMetrics } from '../../src/pool/pool-metrics.js';
import type { ProbeResult } from '../../src/pool/probe.js';
import { metricValue } from '../helpers/gateway.js';
import { backend, FakeTunnel, keyHashes, poolConfig } from './fixtures.js';

afterEach(() => {
  vi.useRealTimers();
});

const CHECK: HealthCheckConfig = {
  path: '/health',
  intervalMs: 1000,
  timeoutMs: 500,
  healthyThreshold: 2,
  unhealthyThreshold: 2,
  websocket: false,
};

/** A pool whose probe answers from `verdicts` (backend id → result), on fake timers; counts checks per id. */
function checkedPool(ids: number[], verdicts: Map<string, ProbeResult>, panicThreshold = 0.5) {
  const registry = new Registry();
  const checks = new Map<string, number>();
  const pool = new Pool<FakeTunnel>(
    poolConfig(
      ids.map((n) => backend(n)),
      { healthCheck: CHECK, panicThreshold },
    ),
    {
      metrics: PoolMetrics.for(registry),
      probe: async (b) => {
        checks.set(b.id, (checks.get(b.id) ?? 0) + 1);
        return verdicts.get(b.id) ?? 'success';
      },
    },
  );
  /** Advances fake time until backend `n` was checked once more (checks are jittered). */
  const nextCheckOf = async (n: number) => {
    const seen = checks.get(backend(n).id) ?? 0;
    while ((checks.get(backend(n).id) ?? 0) === seen) await vi.advanceTimersByTimeAsync(10);
  };
  return { pool, registry, nextCheckOf };
}

function inRing(pool: Pool<FakeTunnel>): string[] {
  return pool.members.filter((m) => m.inRing).map((m) => m.backend.id);
}

describe('panic threshold', () => {
  it('keeps at most floor(threshold × members) out of the ring, the longest-bad ones', () => {
    const members = [1, 2, 3, 4].map((n, i) => new Member<FakeTunnel>(backend(n), i));
    const now = 1_000_000;
    members[0]!.healthy = false;
    members[0]!.badSince = now - 300;
    members[1]!.ejectedUntil = now + 10_000;
    members[1]!.badSince = now - 100;
    members[2]!.healthy = false;
    members[2]!.badSince = now - 200;
    const out = membersOutOfRing(members, 0.5, now);
    expect([...out].map((m) => m.backend.id)).toEqual([backend(1).id, backend(3).id]);
    expect(membersOutOfRing(members, 1, now).size).toBe(3);
    expect(membersOutOfRing(members, 0, now).size).toBe(0);
  });

  it('a pool whose every health endpoint fails keeps half its members in the ring', async () => {
    vi.useFakeTimers();
    const verdicts = new Map<string, ProbeResult>([1, 2, 3, 4].map((n) => [backend(n).id, 'failure']));
    const { pool, registry } = checkedPool([1, 2, 3, 4], verdicts);
    await pool.start();
    await vi.advanceTimersByTimeAsync(5000);
    expect(pool.states()).toEqual({ healthy: 0, unhealthy: 4, ejected: 0 });
    expect(inRing(pool)).toHaveLength(2);
    for (const h of keyHashes(100)) expect(pool.pickHash(h)).toBeDefined();
    const text = await registry.metrics();
    expect(metricValue(text, 'wsgate_pool_backends', { pool: 'chat', state: 'unhealthy' })).toBe(4);
    expect(metricValue(text, 'wsgate_backend_up', { pool: 'chat' })).toBe(0);
    pool.stop();
  });

  it('with panicThreshold 1 a pool can empty, and picks find nothing (the upgrade answers 503)', async () => {
    vi.useFakeTimers();
    const verdicts = new Map<string, ProbeResult>([[backend(1).id, 'timeout']]);
    const { pool } = checkedPool([1], verdicts, 1);
    await pool.start();
    await vi.advanceTimersByTimeAsync(5000);
    expect(pool.pickHash(123)).toBeUndefined();
    verdicts.set(backend(1).id, 'success');
    await vi.advanceTimersByTimeAsync(5000);
    expect(pool.pickHash(123)?.backend.id).toBe(backend(1).id);
    pool.stop();
  });
});

describe('active health verdicts', () => {
  it('needs unhealthyThreshold failures to go down and healthyThreshold passes to come back', async () => {
    vi.useFakeTimers();
    const verdicts = new Map<string, ProbeResult>();
    const { pool, registry, nextCheckOf } = checkedPool([1, 2], verdicts);
    await pool.start();
    await nextCheckOf(2); // passes
    verdicts.set(backend(2).id, 'failure');
    await nextCheckOf(2); // one failure: not yet
    expect(pool.members[1]!.healthy).toBe(true);
    await nextCheckOf(2);
    expect(pool.members[1]!.healthy).toBe(false);
    expect(inRing(pool)).toEqual([backend(1).id]);
    verdicts.delete(backend(2).id);
    await nextCheckOf(2);
    expect(pool.members[1]!.healthy).toBe(false);
    await nextCheckOf(2);
    expect(pool.members[1]!.healthy).toBe(true);
    const text = await registry.metrics();
    expect(metricValue(text, 'wsgate_backend_up', { backend: backend(2).id })).toBe(1);
    expect(metricValue(text, 'wsgate_backend_health_checks_total', { backend: backend(2).id, result: 'failure' })).toBe(
      2,
    );
    pool.stop();
  });

  it('closes the tunnels of a member that left the ring unhealthy with 1014', async () => {
    vi.useFakeTimers();
    const verdicts = new Map<string, ProbeResult>();
    const { pool } = checkedPool([1, 2], verdicts);
    await pool.start();
    const [m1, m2] = pool.members as Member<FakeTunnel>[];
    const t1 = new FakeTunnel(1);
    const t2 = new FakeTunnel(2);
    pool.acquire(m1!, t1);
    pool.acquire(m2!, t2);
    verdicts.set(backend(2).id, 'failure');
    await vi.advanceTimersByTimeAsync(5000);
    expect(t2.closes.map((c) => c.code)).toEqual([1014]);
    expect(t1.closes).toEqual([]);
    pool.stop();
  });
});

describe('passive ejection', () => {
  const outlier = { consecutiveFailures: 3, ejectForMs: 1000, maxEjectForMs: 5000 };

  it('doubles the ejection on repeats up to maxEjectFor', () => {
    expect([0, 1, 2, 3, 4].map((n) => ejectionMs(n, outlier))).toEqual([1000, 2000, 4000, 5000, 5000]);
    const m = new Member<FakeTunnel>(backend(1), 0);
    let now = 0;
    const eject = () => {
      for (let i = 0; i < 3; i++) recordFailure(m, outlier, now);
      return m.ejectedUntil - now;
    };
    expect(eject()).toBe(1000);
    now += 1001;
    expect(eject()).toBe(2000);
    now += 2001;
    expect(eject()).toBe(4000);
    // Back for longer than its last ejection lasted: the back-off starts over.
    now += 4000 + 4001;
    expect(eject()).toBe(1000);
  });

  it('ejects after consecutive failures, brings the member back after ejectFor, and counts it', async () => {
    vi.useFakeTimers();
    const registry = new Registry();
    const pool = new Pool<FakeTunnel>(poolConfig([backend(1), backend(2)], { outlier }), {
      metrics: PoolMetrics.for(registry),
    });
    const m2 = pool.members[1]!;
    const t = new FakeTunnel(7);
    pool.acquire(m2, t);
    pool.reportFailure(m2);
    pool.reportFailure(m2);
    pool.reportSuccess(m2); // a success breaks the streak
    pool.reportFailure(m2);
    pool.reportFailure(m2);
    expect(m2.inRing).toBe(true);
    pool.reportFailure(m2);
    expect(pool.states()).toEqual({ healthy: 1, unhealthy: 0, ejected: 1 });
    expect(inRing(pool)).toEqual([backend(1).id]);
    // Ejection judges new connects; the live tunnel stays.
    expect(t.closes).toEqual([]);
    expect(metricValue(await registry.metrics(), 'wsgate_backend_ejections_total', { backend: backend(2).id })).toBe(1);
    await vi.advanceTimersByTimeAsync(1001);
    expect(inRing(pool)).toEqual([backend(1).id, backend(2).id]);
    pool.stop();
  });
});

describe('update (reload)', () => {
  it('keeps members by id with their tunnels and loads, and re-indexes', () => {
    const config = poolConfig([backend(1), backend(2), backend(3)]);
    const pool = new Pool<FakeTunnel>(config);
    const m3 = pool.members[2]!;
    pool.acquire(m3, new FakeTunnel(1));
    pool.acquire(m3, new FakeTunnel(2));
    pool.update({ ...config, backends: [backend(3), backend(4)] });
    expect(pool.members.map((m) => m.backend.id)).toEqual([backend(3).id, backend(4).id]);
    expect(pool.members[0]).toBe(m3);
    expect(m3.index).toBe(0);
    expect([...pool.loads]).toEqual([2, 0]);
    expect(pool.ring.members.map((m) => m.id)).toEqual([backend(3).id, backend(4).id]);
  });

  it('drains a removed member with 1012 within the drain time, however many tunnels it has', async () => {
    vi.useFakeTimers();
    const registry = new Registry();
    const config = poolConfig([backend(1), backend(2)], { rebalance: { mode: 'off', maxClosesPerSecond: 10 } });
    const pool = new Pool<FakeTunnel>(config, { drainMs: 2000, metrics: PoolMetrics.for(registry) });
    const removed = pool.members[1]!;
    const tunnels = keyHashes(300).map((h) => new FakeTunnel(h));
    for (const t of tunnels) pool.acquire(removed, t);
    pool.update({ ...config, backends: [backend(1)] });
    expect(removed.index).toBe(-1);
    await vi.advanceTimersByTimeAsync(2000);
    expect(tunnels.every((t) => t.closes.length === 1 && t.closes[0]!.code === 1012)).toBe(true);
    // Releasing after removal keeps the live counts right and touches no loads slot.
    for (const t of tunnels) pool.release(removed, t);
    expect(pool.totalActive).toBe(0);
    expect([...pool.loads]).toEqual([0]);
    const text = await registry.metrics();
    expect(metricValue(text, 'wsgate_rebalance_closes_total', { pool: 'chat' })).toBe(300);
    expect(text).not.toContain(`backend="${backend(2).id}"`);
    pool.stop();
  });

  it('a kept pool drains within the drain time a reload set, not the one it was made with', async () => {
    vi.useFakeTimers();
    const config = poolConfig([backend(1), backend(2)], { rebalance: { mode: 'off', maxClosesPerSecond: 10 } });
    const pool = new Pool<FakeTunnel>(config, { drainMs: 60_000 });
    pool.setDrainTime(2000);
    const removed = pool.members[1]!;
    const tunnels = keyHashes(300).map((h) => new FakeTunnel(h));
    for (const t of tunnels) pool.acquire(removed, t);
    pool.update({ ...config, backends: [backend(1)] });
    await vi.advanceTimersByTimeAsync(2000);
    // At 60 s and 10 closes/s, only ~20 would have gone by now.
    expect(tunnels.filter((t) => t.closes.length === 1).length).toBe(300);
    pool.stop();
  });

  it('a tunnel acquired on a member removed during its handshake is drained too', async () => {
    vi.useFakeTimers();
    const config = poolConfig([backend(1), backend(2)]);
    const pool = new Pool<FakeTunnel>(config, { drainMs: 1000 });
    const picked = pool.members[1]!;
    pool.update({ ...config, backends: [backend(1)] });
    const t = new FakeTunnel(5);
    pool.acquire(picked, t);
    await vi.advanceTimersByTimeAsync(1000);
    expect(t.closes.map((c) => c.code)).toEqual([1012]);
  });
});
