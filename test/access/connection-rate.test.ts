// limits.connectionRate buckets on an explicit clock: the per-address bucket first, the process bucket second,
// Retry-After in whole seconds, lazy refill, and a map of per-address buckets that stays bounded in a flood.

import { describe, expect, it } from 'vitest';
import { ConnectionRate, MAX_RETRY_AFTER_SECONDS, MAX_TRACKED_ADDRESSES } from '../../src/access/connection-rate.js';
import type { ConnectionRateConfig } from '../../src/config/types.js';

function rate(perSecond: number, perIpPerSecond: number, perIpBurst = perIpPerSecond * 2): ConnectionRateConfig {
  return { perSecond, perIpPerSecond, perIpBurst };
}

function clock() {
  const c = { now: 1000, read: () => c.now };
  return c;
}

/**
 * A reconnect storm on the explicit clock: `n` clients arrive at once (no per-address limit), each refused one comes
 * back after its Retry-After plus 0–299 ms of jitter (spread evenly), until all are in.
 */
function storm(n: number, perSecond: number) {
  const c = clock();
  const limiter = new ConnectionRate(c.read);
  const config = rate(perSecond, Number.POSITIVE_INFINITY);
  const horizonMs = 400_000;
  const due = new Uint32Array(horizonMs); // clients trying at each millisecond
  due[0] = n;
  let admitted = 0;
  let refusals = 0;
  let lastInMs = 0;
  let longestRetryAfter = 0;
  let jitter = 0;
  for (let t = 0; t < horizonMs && admitted < n; t++) {
    c.now = 1000 + t;
    for (let k = due[t] as number; k > 0; k--) {
      const refused = limiter.take('x', config);
      if (refused === undefined) {
        admitted++;
        lastInMs = t;
        continue;
      }
      refusals++;
      longestRetryAfter = Math.max(longestRetryAfter, refused.retryAfterSeconds);
      jitter = (jitter + 7919) % 300;
      const back = t + refused.retryAfterSeconds * 1000 + jitter;
      if (back < horizonMs) due[back] = (due[back] as number) + 1;
    }
  }
  return { admitted, refusals, lastInMs, longestRetryAfter };
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

  it('a storm of 20,000 at 1,000/s: Retry-After queues the crowd, so each client is refused about once', () => {
    const result = storm(20_000, 1000);
    expect(result.admitted).toBe(20_000);
    // The burst gets in at once, everyone else is refused once and comes back to a token: not N²/2R refusals
    // (about 200,000 here), which a flat "Retry-After: 1" costs.
    expect(result.refusals).toBeGreaterThanOrEqual(19_000);
    expect(result.refusals).toBeLessThanOrEqual(19_000 * 1.02);
    // All in at the pace: (N - burst) / R seconds, plus the last group's jitter.
    expect(result.lastInMs).toBeGreaterThanOrEqual(19_000 - 1000);
    expect(result.lastInMs).toBeLessThanOrEqual(19_000 + 1000);
    expect(result.longestRetryAfter).toBe(19);
  });

  it(`a crowd longer than ${MAX_RETRY_AFTER_SECONDS} s of the rate is told ${MAX_RETRY_AFTER_SECONDS} s at most, and still all get in`, () => {
    const result = storm(100_000, 1000);
    expect(result.admitted).toBe(100_000);
    expect(result.longestRetryAfter).toBe(MAX_RETRY_AFTER_SECONDS);
    expect(result.lastInMs).toBeLessThanOrEqual(99_000 + 5000);
    expect(result.refusals).toBeLessThan(2 * 100_000);
  });

  it('promises nobody came for expire: after a storm and a quiet spell, a refusal says 1 s again', () => {
    const c = clock();
    const limiter = new ConnectionRate(c.read);
    const config = rate(100, Number.POSITIVE_INFINITY);
    for (let i = 0; i < 100; i++) expect(limiter.take('x', config)).toBeUndefined();
    const told = Array.from({ length: 500 }, () => limiter.take('x', config)?.retryAfterSeconds);
    // 100 a second: the first hundred refused are told 1 s, the next hundred 2 s, … the last hundred 5 s.
    expect(told.slice(0, 100).every((s) => s === 1)).toBe(true);
    expect(told.slice(400).every((s) => s === 5)).toBe(true);
    // Nobody came back. Ten seconds later the bucket is full again; empty it, and the next refusal is told 1 s.
    c.now += 10_000;
    for (let i = 0; i < 100; i++) expect(limiter.take('x', config)).toBeUndefined();
    expect(limiter.take('x', config)).toEqual({ scope: 'process', retryAfterSeconds: 1 });
  });

  it('a reload with another perSecond forgets the promises of the old one', () => {
    const c = clock();
    const limiter = new ConnectionRate(c.read);
    const slow = rate(10, Number.POSITIVE_INFINITY);
    for (let i = 0; i < 10; i++) limiter.take('x', slow);
    for (let i = 0; i < 50; i++) limiter.take('x', slow);
    expect(limiter.take('x', slow)?.retryAfterSeconds).toBe(6);
    const fast = rate(20, Number.POSITIVE_INFINITY);
    for (let i = 0; i < 20; i++) expect(limiter.take('x', fast)).toBeUndefined();
    expect(limiter.take('x', fast)).toEqual({ scope: 'process', retryAfterSeconds: 1 });
  });
});
