// The remembered verifications: good until the token's exp (with the skew) or REMEMBER_MS, bounded in count and in
// token length, oldest out first.

import { describe, expect, it } from 'vitest';
import {
  MAX_REMEMBERED_TOKEN_CHARS,
  MAX_REMEMBERED_TOKENS,
  REMEMBER_MS,
  VerifiedTokens,
} from '../../src/access/jwt/verified-tokens.js';

const NOW = 1_800_000_000_000;

describe('VerifiedTokens', () => {
  it('answers with the claims until exp plus the skew, then forgets the token', () => {
    const v = new VerifiedTokens();
    const exp = NOW / 1000 + 10;
    v.remember('t', { sub: 'a', exp }, NOW, 2000);
    expect(v.get('t', NOW + 11_999)).toEqual({ sub: 'a', exp });
    expect(v.get('t', NOW + 12_000)).toBeUndefined();
    expect(v.size).toBe(0);
  });

  it(`trusts a verification ${REMEMBER_MS} ms at most, exp or not`, () => {
    const v = new VerifiedTokens();
    v.remember('no-exp', { sub: 'a' }, NOW, 0);
    v.remember('late-exp', { sub: 'b', exp: NOW / 1000 + 3600 }, NOW, 0);
    expect(v.get('no-exp', NOW + REMEMBER_MS - 1)).toBeDefined();
    expect(v.get('no-exp', NOW + REMEMBER_MS)).toBeUndefined();
    expect(v.get('late-exp', NOW + REMEMBER_MS)).toBeUndefined();
  });

  it('knows only the exact token string', () => {
    const v = new VerifiedTokens();
    v.remember('header.payload.sig', { sub: 'a' }, NOW, 0);
    expect(v.get('header.payload.sig2', NOW)).toBeUndefined();
    expect(v.get('header.payload.si', NOW)).toBeUndefined();
  });

  it(`holds ${MAX_REMEMBERED_TOKENS} tokens at most, dropping the oldest, and never one over ${MAX_REMEMBERED_TOKEN_CHARS} chars`, () => {
    const v = new VerifiedTokens();
    for (let i = 0; i <= MAX_REMEMBERED_TOKENS; i++) v.remember(`t${i}`, { sub: String(i) }, NOW, 0);
    expect(v.size).toBe(MAX_REMEMBERED_TOKENS);
    expect(v.get('t0', NOW)).toBeUndefined();
    expect(v.get(`t${MAX_REMEMBERED_TOKENS}`, NOW)).toEqual({ sub: String(MAX_REMEMBERED_TOKENS) });
    v.remember('x'.repeat(MAX_REMEMBERED_TOKEN_CHARS + 1), { sub: 'long' }, NOW, 0);
    expect(v.get('x'.repeat(MAX_REMEMBERED_TOKEN_CHARS + 1), NOW)).toBeUndefined();
  });

  it('hands out claims that cannot be changed by whoever reads them', () => {
    const v = new VerifiedTokens();
    v.remember('t', { sub: 'a' }, NOW, 0);
    expect(Object.isFrozen(v.get('t', NOW))).toBe(true);
  });
});
