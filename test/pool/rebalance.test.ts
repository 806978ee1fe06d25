// Paced rebalancing: a ring change touches exactly the tunnels whose key moved, and closes them with 1012 at no
// more than the configured rate.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { Pool } from '../../src/pool/pool.js';
import { ClosePacer, MIN_TICK_MS } from '../../src/pool/rebalance.js';
import { backend, FakeTunnel, keyHashes, poolConfig } from './fixtures.js';

afterEach(() => {
  vi.useRealTimers();
});

/** Opens one tunnel per key on the member the pool picks, as the upgrade path does. */
function openAll(pool: Pool<FakeTunnel>, hashes: readonly number[]): Map<FakeTunnel, string> {
  const placed = new Map<FakeTunnel, string>();
  for (const h of hashes) {
    const member = pool.pickHash(h);
    if (!member) throw new Error('no member');
    const t = new FakeTunnel(h);
    pool.acquire(member, t);
    placed.set(t, member.backend.id);
  }
  return placed;
}

function ownerId(pool: Pool<FakeTunnel>, keyHash: number): string | undefined {
  return pool.members[pool.ring.owner(keyHash)]?.backend.id;
}

describe('remapping with thousands of keys', () => {
  it('adding a backend closes exactly the tunnels whose key now maps to it, with 1012', () => {
    vi.useFakeTimers();
    const pool = new Pool<FakeTunnel>(
      poolConfig([backend(1), backend(2), backend(3), backend(4)], {
        rebalance: { mode: 'gradual', maxClosesPerSecond: 1000 },
      }),
    );
    const placed = openAll(pool, keyHashes(5000));
    pool.update({ ...pool.config, backends: [backend(1), backend(2), backend(3), backend(4), backend(5)] });

    const expected = [...placed].filter(([t, id]) => ownerId(pool, t.keyHash) !== id).map(([t]) => t);
    // Consistent hashing: only keys taken by the new member move, about a fifth of them.
    for (const t of expected) expect(ownerId(pool, t.keyHash)).toBe(backend(5).id);
    expect(expected.length).toBeGreaterThan(5000 * 0.12);
    expect(expected.length).toBeLessThan(5000 * 0.28);

    vi.advanceTimersByTime(60_000);
    const closed = [...placed.keys()].filter((t) => t.closes.length > 0);
    expect(new Set(closed)).toEqual(new Set(expected));
    for (const t of closed) expect(t.closes).toEqual([{ code: 1012, reason: 'reconnect', at: expect.any(Number) }]);
  });

  it('a weight change moves only keys between the members whose share changed', () => {
    vi.useFakeTimers();
    const pool = new Pool<FakeTunnel>(poolConfig([backend(1), backend(2), backend(3)]));
    const placed = openAll(pool, keyHashes(3000));
    pool.update({ ...pool.config, backends: [backend(1), backend(2, 2), backend(3)] });
    vi.advanceTimersByTime(120_000);
    let moves = 0;
    for (const [t, id] of placed) {
      const moved = ownerId(pool, t.keyHash) !== id;
      expect(t.closes.length).toBe(moved ? 1 : 0);
      // More weight only attracts keys: nothing moves away from the heavier member.
      if (moved) expect(ownerId(pool, t.keyHash)).toBe(backend(2).id);
      if (moved) moves++;
    }
    // Backend 2 goes from a third to half of the keys: about a sixth of all keys move to it.
    expect(moves).toBeGreaterThan(3000 * 0.1);
    expect(moves).toBeLessThan(3000 * 0.25);
  });

  it('mode off leaves moved tunnels alone', () => {
    vi.useFakeTimers();
    const config = poolConfig([backend(1), backend(2)], { rebalance: { mode: 'off', maxClosesPerSecond: 50 } });
    const pool = new Pool<FakeTunnel>(config);
    const placed = openAll(pool, keyHashes(1000));
    pool.update({ ...config, backends: [backend(1), backend(2), backend(3)] });
    vi.advanceTimersByTime(60_000);
    expect([...placed.keys()].every((t) => t.closes.length === 0)).toBe(true);
  });

  it('a tunnel whose key maps back before its turn is not closed', () => {
    vi.useFakeTimers();
    const config = poolConfig([backend(1), backend(2)], { rebalance: { mode: 'gradual', maxClosesPerSecond: 10 } });
    const pool = new Pool<FakeTunnel>(config);
    const placed = openAll(pool, keyHashes(2000));
    pool.update({ ...config, backends: [backend(1), backend(2), backend(3)] });
    vi.advanceTimersByTime(1000); // about ten closes
    pool.update(config); // backend 3 removed again: every remaining key maps back
    vi.advanceTimersByTime(600_000);
    const closed = [...placed.keys()].filter((t) => t.closes.length > 0);
    expect(closed.length).toBeGreaterThan(5);
    expect(closed.length).toBeLessThanOrEqual(11);
  });
});

describe('ClosePacer', () => {
  it('never exceeds the rate in any one-second window, and spreads closes evenly', () => {
    vi.useFakeTimers();
    const at: number[] = [];
    const pacer = new ClosePacer<number>(50, () => {
      at.push(Date.now());
      return true;
    });
    pacer.enqueue(Array.from({ length: 200 }, (_, i) => i));
    vi.advanceTimersByTime(10_000);
    expect(at).toHaveLength(200);
    for (let i = 50; i < at.length; i++) expect(at[i]! - at[i - 50]!).toBeGreaterThanOrEqual(1000);
    expect(at[199]! - at[0]!).toBeLessThan(4200);
  });

  it('batches per tick above 1000 / MIN_TICK_MS closes per second', () => {
    vi.useFakeTimers();
    let closed = 0;
    const pacer = new ClosePacer<number>(500, () => {
      closed++;
      return true;
    });
    pacer.enqueue(Array.from({ length: 1000 }, (_, i) => i));
    vi.advanceTimersByTime(1000);
    expect(closed).toBe(500);
    expect(MIN_TICK_MS).toBeGreaterThan(0);
    vi.advanceTimersByTime(1000);
    expect(closed).toBe(1000);
    expect(pacer.pending).toBe(0);
  });

  it('entries that no longer apply use no budget', () => {
    vi.useFakeTimers();
    const closed: number[] = [];
    const pacer = new ClosePacer<number>(10, (n) => {
      if (n % 2 === 1) return false;
      closed.push(n);
      return true;
    });
    pacer.enqueue([1, 3, 5, 0, 7, 2]);
    vi.advanceTimersByTime(100);
    expect(closed).toEqual([0]);
    vi.advanceTimersByTime(100);
    expect(closed).toEqual([0, 2]);
  });
});
