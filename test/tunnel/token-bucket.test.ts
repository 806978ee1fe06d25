// Token bucket driven by explicit clock readings (no real time).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../src/tunnel/token-bucket.js';

describe('TokenBucket', () => {
  it('starts full and refuses once the burst is used up', () => {
    const b = new TokenBucket(10, 5);
    for (let i = 0; i < 5; i++) expect(b.take(1, 1000)).toBe(true);
    expect(b.take(1, 1000)).toBe(false);
    expect(b.available(1000)).toBe(0);
  });

  it('refills at the rate, lazily from the clock readings it is given', () => {
    const b = new TokenBucket(10, 5); // one token per 100 ms
    expect(b.take(5, 0)).toBe(true);
    expect(b.take(1, 99)).toBe(false);
    expect(b.take(1, 100)).toBe(true);
    expect(b.available(350)).toBeCloseTo(2.5, 9);
  });

  it('never holds more than the burst however long it idles', () => {
    const b = new TokenBucket(1000, 3);
    expect(b.take(3, 0)).toBe(true);
    expect(b.available(1e9)).toBe(3);
    expect(b.take(4, 1e9)).toBe(true); // 4 > burst: allowed when full (see below), not more
    expect(b.take(1, 1e9)).toBe(false);
  });

  it('a failed take leaves the balance unchanged', () => {
    const b = new TokenBucket(1, 10);
    expect(b.take(8, 0)).toBe(true);
    expect(b.take(3, 0)).toBe(false);
    expect(b.take(2, 0)).toBe(true);
  });

  it('msUntil says when to resume reading', () => {
    const b = new TokenBucket(1000, 100); // 1 token per ms
    expect(b.msUntil(50, 0)).toBe(0);
    expect(b.take(100, 0)).toBe(true);
    expect(b.msUntil(50, 0)).toBe(50);
    expect(b.msUntil(50, 20)).toBe(30);
    expect(b.take(50, 49)).toBe(false);
    expect(b.take(50, 50)).toBe(true);
  });

  it('msUntil rounds fractional waits up to whole milliseconds', () => {
    const b = new TokenBucket(3, 1); // a token every 333.3 ms
    expect(b.take(1, 0)).toBe(true);
    expect(b.msUntil(1, 0)).toBe(334);
    expect(b.take(1, 333)).toBe(false);
    expect(b.take(1, 334)).toBe(true);
  });

  it('a request bigger than the burst passes when the bucket is full and leaves it in debt', () => {
    const b = new TokenBucket(1000, 100); // 1 token/ms, burst 100
    expect(b.msUntil(250, 0)).toBe(0);
    expect(b.take(250, 0)).toBe(true);
    expect(b.available(0)).toBe(-150);
    expect(b.msUntil(1, 0)).toBe(151); // the debt is repaid first
    expect(b.take(1, 150)).toBe(false);
    expect(b.take(1, 151)).toBe(true);
    expect(b.msUntil(250, 151)).toBe(100); // and an oversized request waits for a full bucket
  });

  it('spend always takes and returns how long to pause to get back to zero', () => {
    const b = new TokenBucket(1000, 10);
    expect(b.spend(4, 0)).toBe(0);
    expect(b.spend(26, 0)).toBe(20);
    expect(b.available(10)).toBe(-10);
    expect(b.spend(0, 20)).toBe(0);
  });

  it('ignores clock readings that go backwards', () => {
    const b = new TokenBucket(1000, 10);
    expect(b.take(10, 100)).toBe(true);
    expect(b.take(1, 50)).toBe(false);
    expect(b.take(1, 101)).toBe(true);
    expect(b.take(1, Number.NaN)).toBe(false);
  });

  it('rate 0 and rate Infinity mean unlimited', () => {
    for (const rate of [0, Number.POSITIVE_INFINITY]) {
      const b = new TokenBucket(rate, 1);
      expect(b.unlimited).toBe(true);
      for (let i = 0; i < 1000; i++) expect(b.take(1e9, 0)).toBe(true);
      expect(b.msUntil(1e12, 0)).toBe(0);
      expect(b.spend(1e12, 0)).toBe(0);
    }
    expect(new TokenBucket(1, 1).unlimited).toBe(false);
  });

  it('rejects negative or NaN rates and non-positive bursts, naming the option', () => {
    expect(() => new TokenBucket(-1, 10)).toThrow(/ratePerSecond/);
    expect(() => new TokenBucket(Number.NaN, 10)).toThrow(/ratePerSecond/);
    expect(() => new TokenBucket(10, 0)).toThrow(/burst/);
    expect(() => new TokenBucket(10, Number.POSITIVE_INFINITY)).toThrow(/burst/);
  });

  it('take(n, now + msUntil(n, now)) always succeeds, and two milliseconds earlier it does not', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.5, max: 1e7, noNaN: true }),
        fc.double({ min: 1, max: 1e6, noNaN: true }),
        fc.array(fc.tuple(fc.double({ min: 0, max: 2e6, noNaN: true }), fc.double({ min: 0, max: 1e5, noNaN: true })), {
          maxLength: 20,
        }),
        fc.double({ min: 0, max: 2e6, noNaN: true }),
        fc.double({ min: 0, max: 1e9, noNaN: true }),
        (rate, burst, history, n, start) => {
          const b = new TokenBucket(rate, burst);
          let now = start;
          for (const [n0, dt] of history) {
            now += dt;
            b.take(n0, now);
          }
          const wait = b.msUntil(n, now);
          expect(Number.isInteger(wait)).toBe(true);
          if (wait >= 2) {
            const probe = Object.assign(Object.create(TokenBucket.prototype), b) as TokenBucket;
            expect(probe.take(n, now + wait - 2)).toBe(false);
          }
          expect(b.take(n, now + wait)).toBe(true);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
