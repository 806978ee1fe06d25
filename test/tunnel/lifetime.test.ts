// A tunnel's deadline (src/tunnel/lifetime.ts): maxLifetime less a random part within the jitter, or the token's
// expiry when it comes first; none when both are off.

import { describe, expect, it } from 'vitest';
import { Endings } from '../../src/errors.js';
import { deadlineFor, NO_DEADLINE } from '../../src/tunnel/lifetime.js';

describe('deadlineFor', () => {
  it('is none with maxLifetime off and no token expiry', () => {
    expect(deadlineFor(1000, 0, 0.1, undefined)).toBe(NO_DEADLINE);
  });

  it('draws the lifetime within the jitter fraction below maxLifetime', () => {
    expect(deadlineFor(1000, 10_000, 0.1, undefined, () => 0)).toEqual({ atMs: 11_000, ending: Endings.MAX_LIFETIME });
    expect(deadlineFor(1000, 10_000, 0.1, undefined, () => 1)).toEqual({ atMs: 10_000, ending: Endings.MAX_LIFETIME });
    const draws = Array.from({ length: 1000 }, () => deadlineFor(0, 10_000, 0.1, undefined).atMs);
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(9000);
    expect(Math.max(...draws)).toBeLessThanOrEqual(10_000);
    // Spread, not bunched: a fleet's reconnects come over the whole window.
    expect(Math.max(...draws) - Math.min(...draws)).toBeGreaterThan(800);
  });

  it('ends with token expiry when the token expires first, with the lifetime otherwise', () => {
    expect(deadlineFor(1000, 10_000, 0, 5000)).toEqual({ atMs: 6000, ending: Endings.TOKEN_EXPIRED });
    expect(deadlineFor(1000, 10_000, 0, 50_000)).toEqual({ atMs: 11_000, ending: Endings.MAX_LIFETIME });
    expect(deadlineFor(1000, 0, 0, 50_000)).toEqual({ atMs: 51_000, ending: Endings.TOKEN_EXPIRED });
  });
});
