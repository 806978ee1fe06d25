// Affinity cookie values (src/routing/sticky.ts): opaque, the same in every process for the same config, checked
// without state; and the Cookie-line reading and stripping the proxy does around them.

import { describe, expect, it } from 'vitest';
import {
  cookieValues,
  MAX_STICKY_VALUES,
  STICKY_VALUE_CHARS,
  StickyCookies,
  type StickySpec,
  withoutCookie,
} from '../../src/routing/sticky.js';

const SPEC: StickySpec = { cookie: 'WSGATE_AFFINITY', maxAgeMs: 0, sameSite: 'Lax', secure: 'auto', secret: undefined };
const BACKEND = 'ws://10.0.0.7:3000';

describe('cookie values', () => {
  it('are the same for two instances built from the same config (no shared state)', () => {
    const a = new StickyCookies('chat', SPEC);
    const b = new StickyCookies('chat', { ...SPEC });
    expect(a.valueOf(BACKEND)).toBe(b.valueOf(BACKEND));
    expect(a.valueOf(BACKEND)).toHaveLength(STICKY_VALUE_CHARS);
  });

  it('name a backend without revealing its address: no part of the id, only base64url characters', () => {
    const value = new StickyCookies('chat', SPEC).valueOf(BACKEND);
    expect(value).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(value).not.toContain('10.0.0.7');
    expect(Buffer.from(value, 'base64url').toString('latin1')).not.toContain('10.0.0.7');
  });

  it('differ per backend, per pool and per secret', () => {
    const chat = new StickyCookies('chat', SPEC);
    expect(chat.valueOf('ws://10.0.0.8:3000')).not.toBe(chat.valueOf(BACKEND));
    expect(new StickyCookies('game', SPEC).valueOf(BACKEND)).not.toBe(chat.valueOf(BACKEND));
    const keyed = new StickyCookies('chat', { ...SPEC, secret: 'correct horse battery staple' });
    expect(keyed.valueOf(BACKEND)).not.toBe(chat.valueOf(BACKEND));
  });

  it("are authentic for the pool that made them, for any backend, and for nobody else's key", () => {
    const keyed = new StickyCookies('chat', { ...SPEC, secret: 'correct horse battery staple' });
    expect(keyed.isAuthentic(keyed.valueOf(BACKEND))).toBe(true);
    expect(keyed.isAuthentic(keyed.valueOf('ws://backend-that-left:1'))).toBe(true);
    expect(keyed.isAuthentic(new StickyCookies('chat', SPEC).valueOf(BACKEND))).toBe(false);
    expect(keyed.isAuthentic(new StickyCookies('game', { ...keyed.spec }).valueOf(BACKEND))).toBe(false);
  });

  it('refuse a forged value: every single-character change, truncation, extension, and non-base64 bytes', () => {
    const sticky = new StickyCookies('chat', SPEC);
    const value = sticky.valueOf(BACKEND);
    const forged: string[] = ['', value.slice(0, -1), `${value}A`, value.repeat(2), `${value.slice(0, -2)}==`];
    for (let i = 0; i < value.length; i++) {
      const other = value[i] === 'A' ? 'B' : 'A';
      forged.push(value.slice(0, i) + other + value.slice(i + 1));
    }
    forged.push(`${value.slice(0, -1)}\u00e9`, `${value.slice(0, -1)} `, 'x'.repeat(4096));
    expect(forged.filter((f) => sticky.isAuthentic(f))).toEqual([]);
  });
});

describe('Set-Cookie', () => {
  const value = new StickyCookies('chat', SPEC).valueOf(BACKEND);
  const cookie = (spec: Partial<StickySpec>, tls: boolean) =>
    new StickyCookies('chat', { ...SPEC, ...spec }).setCookie(value, tls);

  it('a session cookie for the whole site, out of reach of scripts, SameSite=Lax by default', () => {
    expect(cookie({}, false)).toBe(`WSGATE_AFFINITY=${value}; Path=/; HttpOnly; SameSite=Lax`);
  });

  it('secure: auto is Secure on a TLS listener only; true and false are what they say', () => {
    expect(cookie({}, true)).toContain('; Secure');
    expect(cookie({ secure: true }, false)).toContain('; Secure');
    expect(cookie({ secure: false }, true)).not.toContain('Secure');
  });

  it('SameSite=None is always Secure (browsers drop it otherwise)', () => {
    expect(cookie({ sameSite: 'None', secure: 'auto' }, false)).toMatch(/; SameSite=None; Secure$/);
  });

  it('maxAge becomes Max-Age in whole seconds, at least 1', () => {
    expect(cookie({ maxAgeMs: 3_600_000 }, false)).toMatch(/; Max-Age=3600$/);
    expect(cookie({ maxAgeMs: 10 }, false)).toMatch(/; Max-Age=1$/);
  });
});

describe('cookieValues: the values of one cookie across Cookie lines (RFC 6265 §5.4)', () => {
  const raw = (...lines: string[]) => lines.flatMap((l) => ['Cookie', l]);

  it('finds the cookie among others, on any Cookie line, in order', () => {
    expect(cookieValues(raw('a=1; WSGATE_AFFINITY=v1; b=2'), 'WSGATE_AFFINITY')).toEqual(['v1']);
    expect(
      cookieValues(
        ['Host', 'x', 'cookie', 'WSGATE_AFFINITY=v1', 'COOKIE', ' WSGATE_AFFINITY = v2 '],
        'WSGATE_AFFINITY',
      ),
    ).toEqual(['v1', 'v2']);
  });

  it('matches the name exactly: not a prefix, a suffix, another case, or a value that contains it', () => {
    const line = 'XWSGATE_AFFINITY=1; WSGATE_AFFINITYX=2; wsgate_affinity=3; other=WSGATE_AFFINITY=4';
    expect(cookieValues(raw(line), 'WSGATE_AFFINITY')).toEqual([]);
  });

  it('a repeated cookie yields each value, at most MAX_STICKY_VALUES however many are sent', () => {
    const many = Array.from({ length: 1000 }, (_, i) => `WSGATE_AFFINITY=v${i}`).join('; ');
    const values = cookieValues(raw(many, many), 'WSGATE_AFFINITY');
    expect(values).toEqual(Array.from({ length: MAX_STICKY_VALUES }, (_, i) => `v${i}`));
  });

  it('nothing for no Cookie line, an empty one, or the name without "="', () => {
    expect(cookieValues(['Host', 'x'], 'WSGATE_AFFINITY')).toEqual([]);
    expect(cookieValues(raw(''), 'WSGATE_AFFINITY')).toEqual([]);
    expect(cookieValues(raw('WSGATE_AFFINITY'), 'WSGATE_AFFINITY')).toEqual(['']);
  });
});

describe('withoutCookie: what the backend gets of a Cookie line', () => {
  it('the line itself (the same string) when the cookie is not in it', () => {
    const line = 'a=1; b=2';
    expect(withoutCookie(line, 'WSGATE_AFFINITY')).toBe(line);
  });

  it('every pair of that name dropped, the others kept byte for byte and in order', () => {
    expect(withoutCookie('a=1; WSGATE_AFFINITY=x; b="q w"; WSGATE_AFFINITY=y; c=%C3', 'WSGATE_AFFINITY')).toBe(
      'a=1; b="q w"; c=%C3',
    );
  });

  it('undefined when nothing else is left (the line is not sent)', () => {
    expect(withoutCookie('WSGATE_AFFINITY=x', 'WSGATE_AFFINITY')).toBeUndefined();
    expect(withoutCookie(' WSGATE_AFFINITY=x ;WSGATE_AFFINITY=y;', 'WSGATE_AFFINITY')).toBeUndefined();
  });

  it('cookies whose name only contains it stay', () => {
    expect(withoutCookie('XWSGATE_AFFINITY=1; WSGATE_AFFINITY=2', 'WSGATE_AFFINITY')).toBe('XWSGATE_AFFINITY=1');
  });
});
