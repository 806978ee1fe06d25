// Units in config values: durations and sizes, including hostile input.

import { describe, expect, it } from 'vitest';
import { parseDuration, parseSize } from '../../src/config/units.js';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['5s', 5000],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['1.5s', 1500],
    [' 10 s ', 10_000],
    [42, 42],
  ])('%s → %d ms', (input, ms) => expect(parseDuration(input)).toBe(ms));

  it.each(['', 's', '5 fortnights', '-1s', '1e3s', 'NaN'])('%j is an error', (input) => {
    expect(parseDuration(input)).toHaveProperty('error');
  });

  it('refuses negative numbers and handles a long hostile string quickly', () => {
    expect(parseDuration(-5)).toHaveProperty('error');
    expect(parseDuration(`${'9'.repeat(100_000)}x`)).toHaveProperty('error');
  });
});

describe('parseSize', () => {
  it.each([
    ['64KiB', 65_536],
    ['1MiB', 1_048_576],
    ['10MB', 10_000_000],
    ['1GiB', 1_073_741_824],
    ['100', 100],
    [4096, 4096],
  ])('%s → %d bytes', (input, bytes) => expect(parseSize(input)).toBe(bytes));

  it.each(['1 MegaByte', 'KiB', '-1KiB'])('%j is an error', (input) => {
    expect(parseSize(input)).toHaveProperty('error');
  });
});
