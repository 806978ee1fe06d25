import { describe, expect, it } from 'vitest';
import {
  type HashKeySpec,
  hashKeyOf,
  type KeySource,
  normaliseIp,
  parseHashKeySpec,
} from '../../src/routing/hash-key.js';

const source = (overrides: Partial<KeySource> = {}): KeySource => ({
  headers: {},
  url: '/chat',
  remoteAddress: '203.0.113.9',
  ...overrides,
});

const cookie = (name: string): HashKeySpec => ({ kind: 'cookie', name });
const query = (name: string): HashKeySpec => ({ kind: 'query', name });
const FALLBACK = { key: '203.0.113.9', fellBack: true };

describe('parseHashKeySpec', () => {
  it.each([
    ['ip', { kind: 'ip' }],
    ['path', { kind: 'path' }],
    ['header:X-User-Id', { kind: 'header', name: 'x-user-id' }],
    ['cookie:SessionID', { kind: 'cookie', name: 'SessionID' }],
    ['query:room', { kind: 'query', name: 'room' }],
    ['query:a.b[]', { kind: 'query', name: 'a.b[]' }],
  ])('%s', (text, expected) => {
    expect(parseHashKeySpec(text)).toEqual(expected);
  });

  it.each([
    '',
    'IP',
    'ip:x',
    'header',
    'header:',
    'header:bad name',
    'header:a:b',
    'cookie:',
    'cookie:a=b',
    'query:',
    'query:a&b',
    'query:a=b',
    'body:x',
  ])('rejects %j', (text) => {
    const result = parseHashKeySpec(text);
    expect(result).toHaveProperty('error');
    expect('error' in result && result.error).toMatch(/.+/);
  });
});

describe('hashKeyOf: ip', () => {
  it('uses the remote address, never a fallback', () => {
    expect(hashKeyOf(source(), { kind: 'ip' })).toEqual({ key: '203.0.113.9', fellBack: false });
    expect(hashKeyOf(source({ remoteAddress: '2001:db8::1' }), { kind: 'ip' })).toEqual({
      key: '2001:db8::1',
      fellBack: false,
    });
  });

  it('normalises IPv4-mapped IPv6 addresses', () => {
    expect(normaliseIp('::ffff:1.2.3.4')).toBe('1.2.3.4');
    expect(normaliseIp('::FFFF:10.0.0.1')).toBe('10.0.0.1');
    expect(normaliseIp('::ffff:abcd')).toBe('::ffff:abcd');
    expect(normaliseIp('::1')).toBe('::1');
    expect(hashKeyOf(source({ remoteAddress: '::ffff:1.2.3.4' }), { kind: 'ip' }).key).toBe('1.2.3.4');
    expect(hashKeyOf(source({ remoteAddress: '::ffff:1.2.3.4' }), cookie('sid'))).toEqual({
      key: '1.2.3.4',
      fellBack: true,
    });
  });
});

describe('hashKeyOf: header', () => {
  const spec: HashKeySpec = { kind: 'header', name: 'x-user-id' };

  it('uses the header value', () => {
    expect(hashKeyOf(source({ headers: { 'x-user-id': 'u-1' } }), spec)).toEqual({ key: 'u-1', fellBack: false });
  });

  it('uses the first occurrence from headersDistinct', () => {
    expect(hashKeyOf(source({ headers: { 'x-user-id': ['u-1', 'u-2'] } }), spec).key).toBe('u-1');
  });

  it('uses the first occurrence in the raw headers, not Node’s joined value, whatever the case of the name', () => {
    const repeated = source({
      headers: { 'x-user-id': 'u-1, u-2' },
      rawHeaders: ['Host', 'h', 'X-User-ID', 'u-1', 'x-user-id', 'u-2'],
    });
    expect(hashKeyOf(repeated, spec).key).toBe('u-1');
    expect(hashKeyOf(source({ rawHeaders: ['Host', 'h'] }), spec)).toEqual(FALLBACK);
  });

  it('falls back to the client IP when missing or empty', () => {
    expect(hashKeyOf(source(), spec)).toEqual(FALLBACK);
    expect(hashKeyOf(source({ headers: { 'x-user-id': '' } }), spec)).toEqual(FALLBACK);
    expect(hashKeyOf(source({ headers: { 'x-user-id': [] } }), spec)).toEqual(FALLBACK);
  });
});

describe('hashKeyOf: cookie', () => {
  const withCookie = (value: string | string[]) => source({ headers: { cookie: value } });

  it('finds the named cookie among others (RFC 6265 §5.4 "; " separators, lax spacing)', () => {
    expect(hashKeyOf(withCookie('a=1; sid=abc; b=2'), cookie('sid'))).toEqual({ key: 'abc', fellBack: false });
    expect(hashKeyOf(withCookie('sid=abc'), cookie('sid')).key).toBe('abc');
    expect(hashKeyOf(withCookie('a=1;sid=abc;b=2'), cookie('sid')).key).toBe('abc');
    expect(hashKeyOf(withCookie('  sid  =  abc  ;b=2'), cookie('sid')).key).toBe('abc');
    expect(hashKeyOf(withCookie('sid="quoted value"'), cookie('sid')).key).toBe('quoted value');
    expect(hashKeyOf(withCookie('sid=a=b=c'), cookie('sid')).key).toBe('a=b=c');
  });

  it('does not match a cookie whose name merely starts or ends with the wanted name', () => {
    expect(hashKeyOf(withCookie('sidx=1; xsid=2; sid=3'), cookie('sid')).key).toBe('3');
  });

  it('is case-sensitive in the name', () => {
    expect(hashKeyOf(withCookie('SID=1'), cookie('sid'))).toEqual(FALLBACK);
  });

  it('uses the first occurrence, across header lines too', () => {
    expect(hashKeyOf(withCookie('sid=first; sid=second'), cookie('sid')).key).toBe('first');
    expect(hashKeyOf(withCookie(['a=1', 'sid=first', 'sid=second']), cookie('sid')).key).toBe('first');
  });

  it('falls back when the cookie is absent, valueless or empty', () => {
    expect(hashKeyOf(source(), cookie('sid'))).toEqual(FALLBACK);
    expect(hashKeyOf(withCookie('a=1; b=2'), cookie('sid'))).toEqual(FALLBACK);
    expect(hashKeyOf(withCookie('sid'), cookie('sid'))).toEqual(FALLBACK);
    expect(hashKeyOf(withCookie('sid=; sid=late'), cookie('sid'))).toEqual(FALLBACK);
    expect(hashKeyOf(withCookie('sid=""'), cookie('sid'))).toEqual(FALLBACK);
  });

  it('stays linear on a 1 MB hostile cookie header', () => {
    const cases: Array<[header: string, expected: string]> = [
      [`${';'.repeat(1_000_000)}sid=end`, 'end'],
      [`${' '.repeat(1_000_000)}sid=end`, 'end'],
      [`${'sid'.repeat(350_000)}; sid=end`, 'end'],
      [`${'s;'.repeat(500_000)}sid=end`, 'end'],
      [`sid=${'='.repeat(1_000_000)}`, '='.repeat(1_000_000)],
      [`${'sid '.repeat(250_000)}=x; sid=end`, 'end'],
    ];
    const started = performance.now();
    for (const [header, expected] of cases) expect(hashKeyOf(withCookie(header), cookie('sid')).key).toBe(expected);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe('hashKeyOf: query', () => {
  const withUrl = (url: string) => source({ url });

  it('finds the named parameter and percent-decodes it', () => {
    expect(hashKeyOf(withUrl('/chat?room=42'), query('room'))).toEqual({ key: '42', fellBack: false });
    expect(hashKeyOf(withUrl('/chat?a=1&room=r%C3%A9d&b=2'), query('room')).key).toBe('réd');
    expect(hashKeyOf(withUrl('/chat?room=a+b%20c'), query('room')).key).toBe('a b c');
    expect(hashKeyOf(withUrl('/chat?room=x#frag'), query('room')).key).toBe('x');
  });

  it('keeps invalid percent-encodings raw', () => {
    expect(hashKeyOf(withUrl('/chat?room=100%'), query('room')).key).toBe('100%');
    expect(hashKeyOf(withUrl('/chat?room=%E0%A4%A'), query('room')).key).toBe('%E0%A4%A');
    expect(hashKeyOf(withUrl('/chat?room=%FF+x'), query('room')).key).toBe('%FF+x');
  });

  it('matches whole names only, case-sensitively, using the first occurrence', () => {
    expect(hashKeyOf(withUrl('/chat?rooms=1&xroom=2&room=3'), query('room')).key).toBe('3');
    expect(hashKeyOf(withUrl('/chat?Room=1'), query('room'))).toEqual(FALLBACK);
    expect(hashKeyOf(withUrl('/chat?room=1&room=2'), query('room')).key).toBe('1');
  });

  it('falls back when absent, valueless or empty', () => {
    expect(hashKeyOf(withUrl('/chat'), query('room'))).toEqual(FALLBACK);
    expect(hashKeyOf(withUrl('/chat?'), query('room'))).toEqual(FALLBACK);
    expect(hashKeyOf(withUrl('/chat?room'), query('room'))).toEqual(FALLBACK);
    expect(hashKeyOf(withUrl('/chat?room=&room=2'), query('room'))).toEqual(FALLBACK);
    expect(hashKeyOf(withUrl('/room=1'), query('room'))).toEqual(FALLBACK);
    expect(hashKeyOf(withUrl('/chat#?room=1'), query('room'))).toEqual(FALLBACK);
  });

  it('stays linear on 100k separators and megabyte values', () => {
    const cases: Array<[url: string, expected: string]> = [
      [`/chat?${'&'.repeat(100_000)}room=end`, 'end'],
      [`/chat?${'room&'.repeat(100_000)}room=end`, ''],
      [`/chat?${'roo&'.repeat(100_000)}room=end`, 'end'],
      [`/chat?${'='.repeat(1_000_000)}&room=end`, 'end'],
      [`/chat?room=${'%41'.repeat(300_000)}`, 'A'.repeat(300_000)],
    ];
    const started = performance.now();
    for (const [url, expected] of cases) {
      const result = hashKeyOf(withUrl(url), query('room'));
      expect(result.key).toBe(expected === '' ? FALLBACK.key : expected);
    }
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe('hashKeyOf: path', () => {
  it('uses the path without the query', () => {
    expect(hashKeyOf(source({ url: '/chat/room-1?token=x' }), { kind: 'path' })).toEqual({
      key: '/chat/room-1',
      fellBack: false,
    });
    expect(hashKeyOf(source({ url: '/chat' }), { kind: 'path' }).key).toBe('/chat');
    expect(hashKeyOf(source({ url: '/chat#x?y' }), { kind: 'path' }).key).toBe('/chat');
  });

  it('falls back on an empty path', () => {
    expect(hashKeyOf(source({ url: '?x=1' }), { kind: 'path' })).toEqual(FALLBACK);
  });
});
