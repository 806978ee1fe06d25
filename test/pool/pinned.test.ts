// A pool with an affinity cookie (pools.NAME.sticky): which member a cookie value pins to, and what the pool does
// to pinned tunnels when its ring changes (src/pool/pool.ts pinnedBy, acquire).

import { afterEach, describe, expect, it, vi } from 'vitest';
import type { PoolConfig } from '../../src/config/types.js';
import { Pool } from '../../src/pool/pool.js';
import type { StickySpec } from '../../src/routing/sticky.js';
import { backend, FakeTunnel, keyHashes, poolConfig } from './fixtures.js';

afterEach(() => {
  vi.useRealTimers();
});

const STICKY: StickySpec = {
  cookie: 'WSGATE_AFFINITY',
  maxAgeMs: 0,
  sameSite: 'Lax',
  secure: 'auto',
  secret: 'a secret of sixteen+',
};

function stickyPool(ids: readonly number[], overrides: Partial<PoolConfig> = {}): Pool<FakeTunnel> {
  return new Pool<FakeTunnel>(
    poolConfig(
      ids.map((n) => backend(n)),
      { sticky: STICKY, ...overrides },
    ),
  );
}

const valueFor = (pool: Pool<FakeTunnel>, n: number) => pool.sticky?.valueOf(backend(n).id) as string;

describe('pinnedBy', () => {
  it('a value naming a member in the ring pins to it, whatever the key would pick', () => {
    const pool = stickyPool([1, 2, 3]);
    for (const n of [1, 2, 3]) expect(pool.pinnedBy([valueFor(pool, n)])).toBe(pool.members[n - 1]);
  });

  it('no value: set; a value of this key for a backend that is not there: stale; anything else: forged', () => {
    const pool = stickyPool([1, 2]);
    expect(pool.pinnedBy([])).toBe('set');
    expect(pool.pinnedBy([valueFor(pool, 9)])).toBe('stale');
    expect(pool.pinnedBy(['not-a-value'])).toBe('forged');
    const otherPool = new Pool<FakeTunnel>(poolConfig([backend(1)], { name: 'game', sticky: STICKY }));
    expect(pool.pinnedBy([otherPool.sticky?.valueOf(backend(1).id) as string])).toBe('forged');
  });

  it('among repeated values the first live one wins; stale outranks forged', () => {
    const pool = stickyPool([1, 2]);
    expect(pool.pinnedBy(['junk', valueFor(pool, 9), valueFor(pool, 2)])).toBe(pool.members[1]);
    expect(pool.pinnedBy(['junk', valueFor(pool, 9)])).toBe('stale');
  });

  it('a member that was ejected or removed no longer pins: stale, so the hash picks and the cookie is re-set', () => {
    const pool = stickyPool([1, 2, 3], {
      outlier: { consecutiveFailures: 1, ejectForMs: 60_000, maxEjectForMs: 60_000 },
    });
    pool.reportFailure(pool.members[1]!);
    expect(pool.pinnedBy([valueFor(pool, 2)])).toBe('stale');
    pool.update({ ...pool.config, backends: [backend(1), backend(2)] });
    expect(pool.pinnedBy([valueFor(pool, 3)])).toBe('stale');
    pool.stop();
  });

  it('a pool without sticky pins nothing', () => {
    const pool = new Pool<FakeTunnel>(poolConfig([backend(1)]));
    expect(pool.sticky).toBeUndefined();
    expect(pool.pinnedBy(['x'])).toBe('set');
  });

  it('a reload that changes the secret: earlier values are forged, new ones pin', () => {
    const pool = stickyPool([1]);
    const before = valueFor(pool, 1);
    pool.update({ ...pool.config, sticky: { ...STICKY, secret: 'another secret of 16' } });
    expect(pool.pinnedBy([before])).toBe('forged');
    expect(pool.pinnedBy([valueFor(pool, 1)])).toBe(pool.members[0]);
  });
});

describe('pinned tunnels and ring changes', () => {
  it('gradual rebalancing closes moved tunnels with 1012 but leaves the pinned ones on their member', () => {
    vi.useFakeTimers();
    const pool = stickyPool([1, 2, 3, 4], { rebalance: { mode: 'gradual', maxClosesPerSecond: 1000 } });
    const pinned: FakeTunnel[] = [];
    const hashed: FakeTunnel[] = [];
    keyHashes(4000).forEach((h, i) => {
      const member = pool.pickHash(h);
      if (!member) throw new Error('no member');
      const t = new FakeTunnel(h);
      pool.acquire(member, t, i % 2 === 0);
      (i % 2 === 0 ? pinned : hashed).push(t);
    });
    pool.update({ ...pool.config, backends: [1, 2, 3, 4, 5].map((n) => backend(n)) });
    vi.advanceTimersByTime(60_000);
    expect(hashed.filter((t) => t.closes.length > 0).length).toBeGreaterThan(hashed.length * 0.1);
    expect(pinned.filter((t) => t.closes.length > 0)).toEqual([]);
    pool.stop();
  });

  it('a removed member still drains its pinned tunnels with 1012; released tunnels leave the pinned set', async () => {
    vi.useFakeTimers();
    const pool = stickyPool([1, 2]);
    const m2 = pool.members[1]!;
    const kept = new FakeTunnel(1);
    const gone = new FakeTunnel(2);
    pool.acquire(m2, kept, true);
    pool.acquire(m2, gone, true);
    pool.release(m2, gone);
    expect([...m2.pinned]).toEqual([kept]);
    pool.update({ ...pool.config, backends: [backend(1)] });
    await vi.advanceTimersByTimeAsync(30_000);
    expect(kept.closes.map((c) => c.code)).toEqual([1012]);
    pool.stop();
  });
});
