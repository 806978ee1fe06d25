// limits.connectionRate buckets on an explicit clock: the per-address bucket first, the process bucket second,
// Retry-After in whole seconds, lazy refill, and a map of per-address buckets that stays bounded in a flood.

import { describe, expect, it } from 'vitest';
import { ConnectionRate, MAX_TRACKED_ADDRESSES } from '../../src/access/connection-rate.js';
import type { ConnectionRateConfig } from '../../src/config/types.js';

function rate(perSecond: number, perIpPerSecond: number, perIpBurst = perIpPerSecond * 2): ConnectionRateConfig {
  return { perSecond, perIpPerSecond, perIpBurst };
}

function clock() {
  const c = { now: 1000, read: () => c.now };
  return c;
}

describe('ConnectionRate', () => {
  it('per address: the burst passes at once, the next gets ip with Retry-After, refills at the rate', () => {
    const c = clock();
    const limiter = new ConnectionRate(c.read);
    const config = rate(Number.POSITIVE_INFINITY, 2, 4);
    for (let i = 0; i < 4; i++) expect(limiter.take('192.0.2.1', config)).toBeUndefined();
    expect(limiter.take('192.0.2.1', config)).toEqual({ scope: 'ip', retryAfterSeconds: 1 });
    // Another address is not affected.
    expect(limiter.take('192.0.2.2', config)).toBeUndefined();
    c.now += 500; // one token back at 2 per second
    expect(limiter.take('192.0.2.1', config)).toBeUndefined();
    expect(limiter.take('192.0.2.1', config)?.scope).toBe('ip');
  });

  it('per process: a burst of one second, then 503-scope refusals with Retry-After', () => {
    const c = clock();
    const limiter = new ConnectionRate(c.read);
    const config = rate(10, Number.POSITIVE_INFINITY);
    for (let i = 0; i < 10; i++) expect(limiter.take(`198.51.100.${i}`, config)).toBeUndefined();
    expect(limiter.take('198.51.100.200', config)).toEqual({ scope: 'process', retryAfterSeconds: 1 });
    c.now += 100;
    expect(limiter.take('198.51.100.200', config)).toBeUndefined();
    expect(limiter.trackedAddresses).toBe(0); // no per-address limit: no buckets kept
  });

  it('Retry-After rounds the wait up to whole seconds (a slow rate waits longer)', () => {
    const c = clock();
    const limiter = new ConnectionRate(c.read);
    const config = rate(Number.POSITIVE_INFINITY, 0.25, 1);
    expect(limiter.take('a', config)).toBeUndefined();
    expect(limiter.take('a', config)).toEqual({ scope: 'ip', retryAfterSeconds: 4 });
    c.now += 3500;
    expect(limiter.take('a', config)).toEqual({ scope: 'ip', retryAfterSeconds: 1 });
  });

  it('an address refused by the process bucket keeps its own token', () => {
    const c = clock();
    const limiter = new ConnectionRate(c.read);
    const config = rate(1, 1, 1);
    expect(limiter.take('a', config)).toBeUndefined(); // uses the one process token
    expect(limiter.take('b', config)?.scope).toBe('process');
    c.now += 1000;
    // b's own token was given back: it gets in now.
    expect(limiter.take('b', config)).toBeUndefined();
  });

  it('an address over its limit does not use up the process bucket', () => {
    const c = clock();
    const limiter = new ConnectionRate(c.read);
    const config = rate(5, 1, 1);
    expect(limiter.take('flood', config)).toBeUndefined();
    for (let i = 0; i < 100; i++) expect(limiter.take('flood', config)?.scope).toBe('ip');
    for (let i = 0; i < 4; i++) expect(limiter.take(`other${i}`, config)).toBeUndefined();
  });

  it('admits at the configured pace over time (a steady stream at the rate is never refused)', () => {
    const c = clock();
    const limiter = new ConnectionRate(c.read);
    const config = rate(100, Number.POSITIVE_INFINITY);
    let admitted = 0;
    // 10 s of attempts every millisecond: 100 burst + 100 per second.
    for (let t = 0; t < 10_000; t++) {
      c.now = 1000 + t;
      if (limiter.take(`x${t}`, config) === undefined) admitted++;
    }
    expect(admitted).toBeGreaterThanOrEqual(1099);
    expect(admitted).toBeLessThanOrEqual(1101);
  });

  it('a flood across many addresses: buckets that refilled are swept, memory follows the active addresses', () => {
    const c = clock();
    const limiter = new ConnectionRate(c.read);
    const config = rate(Number.POSITIVE_INFINITY, 10, 20);
    for (let i = 0; i < 5000; i++) limiter.take(`10.0.${i >> 8}.${i & 255}`, config);
    expect(limiter.trackedAddresses).toBeGreaterThan(1000);
    // Two seconds later every bucket has refilled: the next sweep forgets them all.
    c.now += 2000;
    for (let i = 0; i < 10; i++) limiter.take(`10.1.0.${i}`, config);
    c.now += 60_000;
    limiter.take('10.2.0.1', config);
    expect(limiter.trackedAddresses).toBeLessThan(20);
  });

  it(`never tracks more than ${MAX_TRACKED_ADDRESSES} addresses, however many keep their buckets partly empty`, () => {
    const c = clock();
    const limiter = new ConnectionRate(c.read);
    const config = rate(Number.POSITIVE_INFINITY, 0.001, 1);
    for (let i = 0; i < MAX_TRACKED_ADDRESSES + 5000; i++) limiter.take(`a${i}`, config);
    expect(limiter.trackedAddresses).toBe(MAX_TRACKED_ADDRESSES);
  });

  it('a reload with other rates starts full buckets; the same config object keeps them', () => {
    const c = clock();
    const limiter = new ConnectionRate(c.read);
    const first = rate(Number.POSITIVE_INFINITY, 1, 1);
    expect(limiter.take('a', first)).toBeUndefined();
    expect(limiter.take('a', first)?.scope).toBe('ip');
    const second = rate(Number.POSITIVE_INFINITY, 1, 2);
    expect(limiter.take('a', second)).toBeUndefined();
  });
});
